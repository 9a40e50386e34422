import pandas as pd
import pytest

from churn.errors import DataError
from churn.model.split import Split, assert_out_of_time, plan_split

T = pd.Timestamp


def test_complete_journey_split_for_30_days():
    split = plan_split("2017-12-01", 30, n_train=3, data_start="2017-01-01", data_end="2018-01-01")
    assert split.test_cutoff == T("2017-12-01")
    assert split.val_cutoff == T("2017-11-01")
    assert split.train_cutoffs == [T("2017-08-01"), T("2017-09-01"), T("2017-10-01")]


def test_longer_horizon_pushes_validation_and_training_back():
    split = plan_split("2017-12-01", 90, n_train=2, data_start="2017-01-01", data_end="2018-03-31")
    assert split.val_cutoff == T("2017-09-01")  # Sep 1 + 90 days = Nov 30 <= Dec 1; Oct 1 + 90 > Dec 1
    assert split.train_cutoffs == [T("2017-05-01"), T("2017-06-01")]


def test_training_split_without_test_ends_labels_by_as_of():
    split = plan_split("2017-12-31", 30, n_train=2, data_start="2017-01-01", data_end="2018-01-01", with_test=False)
    assert split.test_cutoff is None
    assert split.val_cutoff + pd.Timedelta(days=30) <= T("2017-12-31")
    assert split.val_cutoff == T("2017-11-30")


def test_test_window_past_the_data_is_refused():
    with pytest.raises(DataError, match="runs past the data"):
        plan_split("2017-12-15", 30, n_train=2, data_start="2017-01-01", data_end="2018-01-01")


def test_too_little_history_is_a_clear_error():
    with pytest.raises(DataError, match="not enough history"):
        plan_split("2017-04-01", 30, n_train=2, data_start="2017-01-01", data_end="2018-01-01")


def test_overlapping_windows_are_caught():
    bad = Split(30, [T("2017-10-15")], T("2017-11-01"), T("2017-12-01"))
    with pytest.raises(AssertionError, match="training labels overlap validation"):
        assert_out_of_time(bad)
