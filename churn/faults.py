"""Named points in the write sequences where tests inject faults (a kill, a full disk, an error).

The publish sequence calls `point("history committed")` and the like between its steps. In
production `hook` is None and a point does nothing. A test sets `churn.faults.hook` to a
function of the point's name (with pytest's monkeypatch, or in a child process it then kills)
to prove that a failure at that exact point keeps the promise: the old outputs or the new
ones, never a mix, and a rerun repairs. Not a setting: nothing a user configures reaches it.

Points, in the order a daily run passes them (see `churn.pipeline._publish`):

    files staged          OUT/.D.staging-*/ holds every output file, none visible yet
    history written       D's warehouse rows are written, not yet committed
    history committed     the commit point: D's rows are the history; files follow
    old set aside         (only without an atomic exchange) OUT/D moved to .D.old-*
    files swapped         OUT/D holds the new files
    old removed           the previous files are deleted
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["hook", "point"]

hook: Callable[[str], None] | None = None


def point(name: str) -> None:
    """Mark that the write sequence reached `name`; a test's hook may raise or kill here."""
    if hook is not None:
        hook(name)
