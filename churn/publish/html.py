"""The report's HTML pieces: tables, embedded images, sections, paragraphs (everything escaped)."""

from __future__ import annotations

import html
from collections.abc import Callable

import pandas as pd

__all__ = ["table", "img", "section", "p", "alert"]

MISSING = "–"


def table(frame: pd.DataFrame, formats: dict[str, str | Callable[[object], str]] | None = None,
          flag: pd.Series | None = None) -> str:
    """An HTML table that scrolls sideways in its own box when the window is narrow.

    `formats` maps columns to a format spec or a function of the value; `flag` marks rows to
    highlight. Missing values show as a dash.
    """
    formats = formats or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = []
    for i, (_, row) in enumerate(frame.iterrows()):
        cells = []
        for col in frame.columns:
            value, spec = row[col], formats.get(col)
            if isinstance(value, float) and value != value:
                text = MISSING
            elif callable(spec):
                text = spec(value)
            else:
                text = format(value, spec) if spec else str(value)
            kind = ' class="t"' if isinstance(value, str) else ""  # words read from the left, numbers right
            cells.append(f"<td{kind}>{html.escape(text)}</td>")
        mark = ' class="flag"' if flag is not None and bool(flag.iloc[i]) else ""
        body.append(f"<tr{mark}>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f"</div>")


def img(png: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'


def section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def alert(text: str) -> str:
    """A line that must not be missed (a model below its backtest, say)."""
    return f'<p class="alert">{html.escape(text)}</p>'
