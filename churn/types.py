"""The run date and the dates derived from it, each defined once.

A run date D is the day a daily run scores: data through the end of D, nothing later. It is
parsed once at the edge (command line, flow parameter, benchmark) into a `RunDate` and travels
as that type; every date derived from it (a list's due date, the start of a cooldown, the end
of a label window) is computed by one function here.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunDate", "label_window_end", "last_labelled_cutoff", "due_date", "cooldown_start", "days_between"]


class RunDate(dt.date):
    """A calendar day: the day a run scores (its data goes through the end of that day).

    A `datetime.date`, so it compares, hashes and formats like one (`str(d)` is YYYY-MM-DD);
    `RunDate.parse` accepts a date, a datetime, a pandas Timestamp or an ISO string.
    """

    @classmethod
    def parse(cls, value: object) -> RunDate:
        """The run date of `value`; ValueError for anything that is not a calendar day."""
        if isinstance(value, RunDate):
            return value
        if isinstance(value, str):
            text = value.strip()
            try:
                day = dt.date.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a date: use YYYY-MM-DD") from None
            if len(text) != 10:  # fromisoformat also takes 20171231 and 2017-W52-7
                raise ValueError(f"{value!r} is not a date: use YYYY-MM-DD")
            return cls(day.year, day.month, day.day)
        if isinstance(value, dt.datetime):  # includes pandas.Timestamp
            if value != value:  # pandas.NaT, which is a datetime, equals nothing
                raise ValueError("no date given (NaT)")
            return cls(value.year, value.month, value.day)
        if isinstance(value, dt.date):
            return cls(value.year, value.month, value.day)
        raise ValueError(f"{value!r} is not a date")

    @property
    def timestamp(self) -> pd.Timestamp:
        """Midnight at the start of the day, as pandas keeps dates."""
        import pandas as pd  # here, not at the top: `churn --help` need not load pandas

        return pd.Timestamp(self.year, self.month, self.day)

    def days(self, n: int) -> RunDate:
        """The day `n` days later (earlier when negative)."""
        return self + dt.timedelta(days=n)


def label_window_end(cutoff: object, horizon_days: int) -> pd.Timestamp:
    """The last day of the label window (T, T + H] of a cutoff T: churned = no occasion up to it."""
    import pandas as pd

    return pd.Timestamp(cutoff).normalize() + pd.Timedelta(days=horizon_days)


def last_labelled_cutoff(day: object, horizon_days: int) -> pd.Timestamp:
    """The latest cutoff T whose label window (T, T + H] ends by `day`: the inverse of `label_window_end`."""
    import pandas as pd

    return pd.Timestamp(day).normalize() - pd.Timedelta(days=horizon_days)


def due_date(run_date: object, due_days: int) -> RunDate:
    """The day a list published on D should be worked by: D + due_days."""
    return RunDate.parse(run_date).days(due_days)


def cooldown_start(run_date: object, cooldown_days: int) -> pd.Timestamp:
    """The first day of D's cooldown: a customer listed or contacted after it is not listed again.

    Listed on D - N: out of a cooldown of N days on D; listed on D - N + 1: still in it.
    """
    import pandas as pd

    return RunDate.parse(run_date).timestamp - pd.Timedelta(days=cooldown_days)


def days_between(start: object, end: object) -> int:
    """Whole days from `start` to `end` (calendar days; negative when `end` is earlier)."""
    return (RunDate.parse(end) - RunDate.parse(start)).days
