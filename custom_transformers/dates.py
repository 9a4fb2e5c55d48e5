"""Turn an ISO 8601 date-time such as "2021-03-05T14:30:00+00:00" into hour, weekday and month.

Why a transformer, and not three lines in the Flask route: whatever turns the raw field into
features must run the same way in training and in serving. Inside the pipeline it does, and
it travels in pipeline.pickle; in the route it is a second copy that drifts from the first
(training/serving skew).
"""

from datetime import date, datetime

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

# _check_feature_names_in is private, but it is how scikit-learn's own transformers name and
# check their inputs; requirements_prod.txt pins the version, and the tests would catch a change.
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

PARTS = ("hour", "weekday", "month")
MISSING = (np.nan, np.nan, np.nan)


def parse_date(value):
    """A `datetime` for a date-time, a `date` for a date alone, None when unreadable or missing.

    `datetime.fromisoformat` reads ISO 8601 as Python 3.11 does: "2021-03-05T14:30:00+00:00",
    "2021-03-05 14:30", "2021-03-05T14:30Z", "2021-03-05"... It keeps the time as written and
    the offset beside it (tzinfo): nothing is converted.
    """
    if isinstance(value, np.datetime64):  # a datetime64 column, already parsed by pandas
        value = pd.Timestamp(value)
    if isinstance(value, date):  # datetime, date and pd.Timestamp (NaT too)
        return None if pd.isna(value) else value
    if isinstance(value, str):
        return parse_iso(value.strip())
    if pd.isna(value):  # None, NaN, pd.NA
        return None
    # A number is not an unreadable date but the wrong column (or epoch seconds): say so,
    # rather than silently turn the whole column into NaN.
    raise TypeError(f"DateParts reads ISO 8601 strings, got {value} ({type(value).__name__})")


def parse_iso(text):
    try:
        # A date alone first: datetime.fromisoformat would read it as midnight.
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None  # "", "yesterday", "2021-02-30"...


def date_parts(value):
    """(hour, weekday, month) of one value, as floats; NaN for what is not known.

    The hour is the local wall-clock hour *as written*: "2021-03-05T23:30:00-05:00" is hour
    23 of a Friday, not 04:30 UTC on Saturday. The hour of an event is a fact about the place
    where it happened (night-time is night-time); converted to UTC, the same 23:30 would move
    by an hour twice a year with summer time. A date without a time has weekday and month but
    no hour (NaN, not 0: nobody recorded midnight).
    """
    parsed = parse_date(value)
    if parsed is None:
        return MISSING
    hour = parsed.hour if isinstance(parsed, datetime) else np.nan
    # weekday(): Monday is 0 and Sunday 6, as in pandas (Series.dt.weekday).
    return (float(hour), float(parsed.weekday()), float(parsed.month))


class DateParts(TransformerMixin, BaseEstimator):
    """Replace every date-time column by three numeric columns: hour, weekday and month.

    * hour: 0 to 23, the local wall-clock hour as written (the offset is ignored, not
      applied; see `date_parts`); NaN for a date without a time;
    * weekday: 0 (Monday) to 6 (Sunday);
    * month: 1 (January) to 12.

    Accepts any 2D input of ISO 8601 strings: a DataFrame with one or several ``str`` or
    ``object`` columns, or a numpy array (datetime objects and datetime64 columns work too).
    Returns a float64 array with three columns per input column, in the input's order
    ("Date" -> "Date_hour", "Date_weekday", "Date_month"). A missing value (None, NaN, "")
    or an unreadable string ("yesterday", "2021-02-30") becomes NaN in all three columns:
    put an imputer after this step, as for any column with missing values. A number raises
    a TypeError: it is a mistake in the code (the wrong column), not a bad value in the data.

    Like CabinDeck it learns nothing; ``fit`` only records the number and names of the input
    columns, so that ``get_feature_names_out`` (and ``set_output(transform="pandas")``) work.
    The parts stay numbers: a linear model then reads the hour as a line (23 far from 0);
    one-hot encode them afterwards if that matters for your model.
    """

    def fit(self, X, y=None):
        # dtype=None keeps the strings as they are; ensure_all_finite=False lets NaN through.
        validate_data(self, X, dtype=None, ensure_all_finite=False)
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=False)
        # One (hour, weekday, month) per cell: shape (rows, columns, 3), then side by side.
        parts = np.array([[date_parts(value) for value in row] for row in X], dtype=np.float64)
        return parts.reshape(X.shape[0], X.shape[1] * len(PARTS))

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        return np.array([f"{name}_{part}" for name in names for part in PARTS], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True
        # The output is float64 whatever comes in: it keeps no dtype of the input's.
        tags.transformer_tags.preserves_dtype = []
        return tags
