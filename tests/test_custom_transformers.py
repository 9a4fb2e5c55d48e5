import pickle
from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.estimator_checks import parametrize_with_checks

from custom_transformers import CabinDeck, DateParts

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


# ---------------------------------------------------------------------------------------
# DateParts
# ---------------------------------------------------------------------------------------

# These checks feed random floats, which DateParts refuses with a TypeError (a number is the
# wrong column, not a date). test_date_parts_same_output_whatever_the_call checks the same
# properties (pickling, refitting, row order, subsets, DataFrame input) on dates.
NUMERIC_INPUT_CHECKS = {
    name: "feeds numbers; DateParts reads date strings and refuses numbers"
    for name in [
        "check_dict_unchanged",
        "check_dtype_object",
        "check_estimators_dtypes",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_fit_idempotent",
        "check_fit_score_takes_y",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_pipeline_consistency",
        "check_transformer_data_not_an_array",
        "check_transformer_general",
    ]
}


@parametrize_with_checks([DateParts()], expected_failed_checks=lambda _: NUMERIC_INPUT_CHECKS)
def test_date_parts_scikit_learn_conventions(estimator, check):
    check(estimator)


NaN = np.nan
KNOWN_DATES = {  # text -> [hour, weekday (Monday 0), month]
    "2021-03-05T14:30:00+00:00": [14, 4, 3],  # a Friday
    "2021-03-07 00:00": [0, 6, 3],  # a Sunday, at midnight: hour 0
    "2020-02-29T08:15Z": [8, 5, 2],  # a leap day
    # The wall-clock time as written: in UTC this is 04:59 on Sunday 1 January 2023.
    "2022-12-31T23:59:59-05:00": [23, 5, 12],
    "2021-01-04T09:00:00.123456+05:30": [9, 0, 1],  # a Monday, with microseconds
    "2021-03-05": [NaN, 4, 3],  # a date alone has no hour (not midnight)
    " 2021-03-05T14:30 ": [14, 4, 3],  # spaces around are ignored
}


def date_frame(values, name="Date"):
    return pd.DataFrame({name: pd.Series(values, dtype="str")})


def test_parts_of_known_dates():
    X = date_frame(list(KNOWN_DATES))
    parts = DateParts().fit_transform(X)
    assert parts.dtype == np.float64
    np.testing.assert_array_equal(parts, list(KNOWN_DATES.values()))


def test_missing_and_unreadable_values_are_nan_in_all_three_parts():
    values = [None, NaN, pd.NA, pd.NaT, "", "  ", "yesterday", "2021-02-30", "2021-13-01"]
    values += ["14:30", "2021-03-05T25:00"]
    X = np.array([[value] for value in values], dtype=object)
    parts = DateParts().fit(date_frame(["2021-03-05"]).to_numpy()).transform(X)
    assert parts.shape == (len(values), 3) and np.isnan(parts).all()


def test_parsed_dates_are_read_too():
    # A column that pandas already parsed: datetime64, or Python datetime and date objects.
    X = pd.DataFrame({"Date": pd.to_datetime(["2021-03-07 13:00", None])})
    np.testing.assert_array_equal(DateParts().fit_transform(X), [[13, 6, 3], [NaN, NaN, NaN]])
    X = np.array([[datetime(2022, 12, 31, 23)], [date(2021, 3, 5)]], dtype=object)
    np.testing.assert_array_equal(DateParts().fit_transform(X), [[23, 5, 12], [NaN, 4, 3]])


def test_numbers_are_refused():
    # Not an unreadable date but the wrong column: silently all NaN would hide the mistake.
    with pytest.raises(TypeError, match="ISO 8601 strings, got 1615000000"):
        DateParts().fit_transform(np.array([[1615000000]]))


def test_several_columns_side_by_side():
    X = pd.DataFrame(
        {"Start": ["2021-03-07 00:00", None], "End": ["2022-12-31T23:59:59-05:00", "2021-03-05"]},
        dtype="str",
    )
    parts = DateParts().fit(X)
    assert list(parts.get_feature_names_out()) == [
        "Start_hour",
        "Start_weekday",
        "Start_month",
        "End_hour",
        "End_weekday",
        "End_month",
    ]
    np.testing.assert_array_equal(
        parts.transform(X), [[0, 6, 3, 23, 5, 12], [NaN, NaN, NaN, NaN, 4, 3]]
    )


def test_date_parts_feature_names_and_pandas_output():
    parts = DateParts().fit(date_frame(["2021-03-05"]))
    assert list(parts.get_feature_names_out()) == ["Date_hour", "Date_weekday", "Date_month"]
    unnamed = DateParts().fit(np.array([["2021-03-05"]], dtype=object))
    assert list(unnamed.get_feature_names_out()) == ["x0_hour", "x0_weekday", "x0_month"]
    frame = parts.set_output(transform="pandas").transform(date_frame(["2021-03-07 00:00"]))
    assert isinstance(frame, pd.DataFrame)
    assert frame.to_dict("records") == [{"Date_hour": 0, "Date_weekday": 6, "Date_month": 3}]


def test_date_parts_wrong_number_of_columns_is_refused():
    parts = DateParts().fit(date_frame(["2021-03-05"]))
    with pytest.raises(ValueError):
        parts.transform(pd.DataFrame({"Date": ["2021-03-05"], "End": ["2021-03-06"]}))


def test_date_parts_same_output_whatever_the_call():
    X = date_frame(list(KNOWN_DATES) + [None]).to_numpy()
    parts = DateParts().fit(X)
    expected = [*KNOWN_DATES.values(), [NaN, NaN, NaN]]
    np.testing.assert_array_equal(parts.transform(X), expected)
    np.testing.assert_array_equal(DateParts().fit_transform(X), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(parts)).transform(X), expected)
    np.testing.assert_array_equal(parts.transform(X[::-1]), expected[::-1])
    np.testing.assert_array_equal(parts.transform(X[2:5]), expected[2:5])


def test_date_parts_in_a_pipeline_survive_pickling():
    # The way a model uses it: the parts, the imputer for missing dates, then the model.
    X = pd.DataFrame({"Date": pd.Series(list(KNOWN_DATES) * 3 + [None, "soon"], dtype="str")})
    y = [i % 2 == 0 for i in range(len(X))]
    dates = make_pipeline(DateParts(), SimpleImputer())
    model = make_pipeline(make_column_transformer((dates, ["Date"])), LogisticRegression())
    model.fit(X, y)
    assert list(model[0].get_feature_names_out()) == [
        "pipeline__Date_hour",
        "pipeline__Date_weekday",
        "pipeline__Date_month",
    ]
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    assert not np.isnan(again.predict_proba(X)).any()
