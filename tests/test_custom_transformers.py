import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.estimator_checks import parametrize_with_checks

from custom_transformers import CabinDeck

# These checks compare outputs with assert_allclose, which needs numbers; CabinDeck outputs
# letters. test_same_output_whatever_the_call below checks the same properties with equality.
NUMERIC_OUTPUT_CHECKS = {
    name: "compares the output as numbers; CabinDeck outputs letters"
    for name in [
        "check_estimators_pickle",
        "check_fit_idempotent",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_pipeline_consistency",
        "check_transformer_data_not_an_array",
        "check_transformer_general",
    ]
}


@parametrize_with_checks([CabinDeck()], expected_failed_checks=lambda _: NUMERIC_OUTPUT_CHECKS)
def test_scikit_learn_conventions(estimator, check):
    check(estimator)


def assert_same(actual, expected):
    """Compare an output of CabinDeck with nested lists where None means missing."""
    assert isinstance(actual, np.ndarray) and actual.dtype == object
    assert [[None if pd.isna(v) else v for v in row] for row in actual] == expected


@pytest.mark.parametrize("dtype", ["str", object])
def test_deck_letter_from_a_dataframe(dtype):
    X = pd.DataFrame({"Cabin": ["C85", "B57 B59", np.nan, "F G73", " e10 ", ""]}, dtype=dtype)
    assert_same(CabinDeck().fit_transform(X), [["C"], ["B"], [None], ["F"], ["E"], [None]])


def test_missing_values_of_every_kind_stay_missing():
    X = np.array([[None], [np.nan], [pd.NA], ["  "]], dtype=object)
    result = CabinDeck().fit(np.array([["A1"]], dtype=object)).transform(X)
    assert pd.isna(result).all()


def test_unseen_decks_pass_through():
    # Nothing is learnt, so a deck never seen in fit (or not even a real deck) is kept as is.
    deck = CabinDeck().fit(pd.DataFrame({"Cabin": ["C85"]}))
    assert_same(deck.transform(pd.DataFrame({"Cabin": ["Z99", "T"]})), [["Z"], ["T"]])


def test_numpy_array_with_several_columns():
    X = np.array([["A1", np.nan], ["B2", "C3"]], dtype=object)
    assert_same(CabinDeck().fit_transform(X), [["A", None], ["B", "C"]])


def test_feature_names_out():
    deck = CabinDeck().fit(pd.DataFrame({"Cabin": ["C85"]}))
    assert list(deck.get_feature_names_out()) == ["Cabin"]
    assert list(CabinDeck().fit(np.array([["C85"]])).get_feature_names_out()) == ["x0"]


def test_wrong_number_of_columns_is_refused():
    deck = CabinDeck().fit(pd.DataFrame({"Cabin": ["C85"]}))
    with pytest.raises(ValueError):
        deck.transform(pd.DataFrame({"Cabin": ["C85"], "Deck": ["C"]}))


def test_same_output_whatever_the_call():
    X = np.array([["C85"], [np.nan], ["B57 B59"], ["A6"]], dtype=object)
    deck = CabinDeck().fit(X)
    expected = [["C"], [None], ["B"], ["A"]]
    assert_same(deck.transform(X), expected)
    assert_same(CabinDeck().fit_transform(X), expected)
    assert_same(pickle.loads(pickle.dumps(deck)).transform(X), expected)
    assert_same(deck.transform(X[::-1]), expected[::-1])  # row order does not matter
    assert_same(deck.transform(X[1:3]), expected[1:3])  # nor which rows come together


def test_in_a_pipeline_missing_and_unseen_decks():
    # The way the shipped pipeline uses it: a missing deck becomes its own category, and a
    # deck never seen in training is ignored by the one-hot encoder (all zeros), not an error.
    cabin = make_pipeline(
        CabinDeck(),
        SimpleImputer(strategy="constant", fill_value="missing"),
        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
    )
    model = make_column_transformer((cabin, ["Cabin"]))
    model.fit(pd.DataFrame({"Cabin": ["C85", "C2", np.nan, "B5"]}))
    assert list(model.get_feature_names_out()) == [
        "pipeline__Cabin_B",
        "pipeline__Cabin_C",
        "pipeline__Cabin_missing",
    ]
    new = pd.DataFrame({"Cabin": pd.Series(["C1", np.nan, "Z9"], dtype="str")})
    np.testing.assert_array_equal(model.transform(new), [[0, 1, 0], [0, 0, 1], [0, 0, 0]])
