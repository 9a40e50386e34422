"""The run date is parsed once, and each date derived from it has one definition."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from churn.decide.winback import in_cooldown, listed_dates
from churn.types import RunDate, cooldown_start, due_date, label_window_end, last_labelled_cutoff


@pytest.mark.parametrize("value", ["2017-12-31", " 2017-12-31 ", dt.date(2017, 12, 31),
                                   dt.datetime(2017, 12, 31, 20, 30), pd.Timestamp("2017-12-31 23:59")])
def test_a_run_date_is_a_calendar_day_whatever_it_came_as(value):
    day = RunDate.parse(value)
    assert day == dt.date(2017, 12, 31) and isinstance(day, RunDate) and str(day) == "2017-12-31"
    assert day.timestamp == pd.Timestamp("2017-12-31") and isinstance(day.days(1), RunDate)


@pytest.mark.parametrize("value", ["31/12/2017", "2017-13-01", "20171231", "", "yesterday", pd.NaT, 20171231])
def test_anything_else_is_refused(value):
    with pytest.raises(ValueError):
        RunDate.parse(value)


def test_derived_dates():
    day = RunDate(2024, 6, 30)
    assert due_date(day, 2) == RunDate(2024, 7, 2)
    assert label_window_end("2024-06-30", 30) == pd.Timestamp("2024-07-30")
    assert last_labelled_cutoff(label_window_end("2024-06-30", 30), 30) == pd.Timestamp("2024-06-30")
    assert cooldown_start(day, 30) == pd.Timestamp("2024-05-31")


def test_the_cooldown_boundary_is_the_same_for_the_policy_and_the_manifest():
    ids = pd.Series(["listed 30 days ago", "listed 29 days ago", "never"])
    last = pd.Series(pd.to_datetime(["2024-05-31", "2024-06-01"]), index=ids[:2])
    cooling = in_cooldown(listed_dates(ids, last), RunDate(2024, 6, 30), 30)
    assert cooling.tolist() == [False, True, False]
    assert not in_cooldown(listed_dates(ids, last), None, 30).any()
    assert np.isnat(listed_dates(ids, None)).all()
