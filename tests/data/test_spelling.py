"""One written form for ids and labels: each variant of the corpus comes out the same."""

from __future__ import annotations

import pandas as pd
import pytest

from churn.data import spelling
from tests.data import corpus


def text(values: list[object]) -> pd.Series:
    return pd.Series(values, dtype="str")


def test_float_spellings_of_an_id_become_the_integer_text():
    stripped = [v.strip() for v in corpus.ID_SPELLINGS_CSV]  # the contract strips cells first

    assert spelling.normal_ids(text(stripped)).tolist() == [corpus.ID] * len(stripped)


def test_other_ids_are_kept_as_written():
    ids = ["007", "A1", "a1", "13482.5", "-7.0", "1.0.0", None]

    assert spelling.normal_ids(text(ids)).tolist()[:6] == ["007", "A1", "a1", "13482.5", "-7", "1.0.0"]
    assert spelling.normal_ids(text(ids)).isna().tolist() == [False] * 6 + [True]


def test_scientific_notation_is_flagged_only_among_numeric_ids():
    assert spelling.scientific_ids(text(["13481", "1.3482E+04", None, "13483.0"])).tolist() == [
        False, True, False, False]
    assert not spelling.scientific_ids(text(["A12", "1E5"])).any()


@pytest.mark.parametrize(("kind", "spellings"), corpus.EVENT_TYPE_SPELLINGS.items())
def test_label_spellings_become_one_label(kind, spellings):
    assert spelling.normal_labels(text(spellings)).tolist() == [kind] * len(spellings)


def test_blank_labels_are_missing_and_letters_beyond_ascii_are_kept():
    got = spelling.normal_labels(text(["  ", "--", None, "Réclamation Client"]))

    assert got.isna().tolist() == [True, True, True, False] and got.iloc[3] == "réclamation_client"
    assert spelling.normal_label(" Opt-Out ") == "opt_out" and spelling.normal_label("--") == ""


@pytest.mark.parametrize(("one", "other"), corpus.ID_LOOSE_MISMATCHES)
def test_loose_ids_tell_the_same_id_spelled_differently(one, other):
    assert spelling.loose_ids(text([one])).iloc[0] == spelling.loose_ids(text([other])).iloc[0]


def test_loose_ids_keep_different_ids_apart():
    keys = spelling.loose_ids(text(["12346", "12347", "1234", "0", "A1", "B1"]))

    assert keys.is_unique and keys.iloc[3] == "0"


def test_normal_id_of_a_typed_argument():
    assert spelling.normal_id(" 13482.0 ") == "13482" and spelling.normal_id("c7") == "c7"
