"""Out-of-time splits: monthly training cutoffs, then a validation cutoff, then a test cutoff.

Every training label window ends on or before the validation cutoff, whose window ends on or
before the test cutoff. `assert_out_of_time` checks it wherever a split is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from churn.errors import DataError
from churn.types import label_window_end, last_labelled_cutoff


@dataclass(frozen=True)
class Split:
    """Cutoffs of one out-of-time split (test_cutoff is None when training for production)."""

    horizon_days: int
    train_cutoffs: list[pd.Timestamp] = field(default_factory=list)
    val_cutoff: pd.Timestamp | None = None
    test_cutoff: pd.Timestamp | None = None

    def all_cutoffs(self) -> list[pd.Timestamp]:
        extra = [c for c in (self.val_cutoff, self.test_cutoff) if c is not None]
        return sorted(self.train_cutoffs + extra)

    def to_dict(self) -> dict[str, object]:
        day = lambda ts: None if ts is None else ts.date().isoformat()  # noqa: E731
        return {"horizon_days": self.horizon_days, "train_cutoffs": [day(c) for c in self.train_cutoffs],
                "val_cutoff": day(self.val_cutoff), "test_cutoff": day(self.test_cutoff)}


def assert_out_of_time(split: Split) -> None:
    """Raise if any label window overlaps a later cutoff (the leak that flatters a model)."""
    h = split.horizon_days
    assert split.train_cutoffs, "no training cutoff"
    assert split.val_cutoff is not None, "no validation cutoff"
    assert label_window_end(max(split.train_cutoffs), h) <= split.val_cutoff, "training labels overlap validation"
    if split.test_cutoff is not None:
        assert label_window_end(split.val_cutoff, h) <= split.test_cutoff, "validation labels overlap test"


def _monthly(anchor: pd.Timestamp, earliest: pd.Timestamp) -> list[pd.Timestamp]:
    """anchor, anchor - 1 month, anchor - 2 months, ... down to `earliest`, newest first."""
    out, k = [], 0
    while (t := anchor - pd.DateOffset(months=k)) >= earliest:
        out.append(t)
        k += 1
    return out


def plan_split(
    anchor: object,
    horizon_days: int,
    n_train: int,
    data_start: object,
    data_end: object,
    min_history_days: int = 90,
    with_test: bool = True,
) -> Split:
    """Plan monthly cutoffs ending at `anchor`: the test cutoff, or the as-of date when training.

    With `with_test`, the anchor is the test cutoff and its label window must lie inside the data.
    Without, the anchor is the date the model is trained as of (no test cutoff): the validation
    window must end by then. Cutoffs step back a calendar month at a time from the anchor.
    """
    anchor = pd.Timestamp(anchor).normalize()
    start, end = pd.Timestamp(data_start).normalize(), pd.Timestamp(data_end).normalize()
    if with_test and label_window_end(anchor, horizon_days) > end:
        raise DataError(f"test cutoff {anchor.date()} + {horizon_days} days runs past the data (last order "
                        f"{end.date()}): choose a cutoff on or before {last_labelled_cutoff(end, horizon_days).date()}")
    val_latest = last_labelled_cutoff(anchor if with_test else min(anchor, end), horizon_days)
    earliest = start + pd.Timedelta(days=min_history_days)
    months = _monthly(anchor, earliest)
    val = next((t for t in months if t <= val_latest), None)
    train = [] if val is None else [t for t in months if label_window_end(t, horizon_days) <= val][:n_train]
    if not train:
        raise DataError(
            f"not enough history for horizon {horizon_days} days before {anchor.date()}: data starts "
            f"{start.date()}, the first cutoff needs {min_history_days} days of history and every "
            f"training label window must end before the validation cutoff; use a later cutoff or a "
            f"shorter horizon")
    split = Split(horizon_days, sorted(train), val, anchor if with_test else None)
    assert_out_of_time(split)
    return split


def rolling_test_cutoffs(latest: object, count: int) -> list[pd.Timestamp]:
    """`count` monthly test cutoffs ending at `latest` (same day of month), oldest first."""
    latest = pd.Timestamp(latest).normalize()
    return sorted(latest - pd.DateOffset(months=k) for k in range(max(count, 1)))
