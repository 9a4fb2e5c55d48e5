"""Reduce a Titanic cabin number such as "C85" or "B57 B59" to its deck letter."""

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data


def cabin_deck(cabin):
    """Return the deck letter of one cabin: "C85" -> "C", "B57 B59" -> "B".

    A missing or blank cabin stays missing (NaN): deciding what "no cabin" means is the job
    of a later step of the pipeline, not of this one.
    """
    if pd.isna(cabin):
        return np.nan
    text = str(cabin).strip()
    # Upper case, so that "c85" typed by a user of the API lands on the same deck as "C85".
    return text[0].upper() if text else np.nan


class CabinDeck(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Replace every cabin number by its deck letter, column by column.

    Accepts any 2D input: a DataFrame with ``str`` or ``object`` columns, or a numpy array.
    Returns an object array of the same shape holding one-letter strings and NaN.
    It learns nothing; ``fit`` only records the number and names of the input columns, as
    every scikit-learn transformer does, so that ``get_feature_names_out`` works.
    """

    def fit(self, X, y=None):
        # dtype=None keeps the strings as they are; ensure_all_finite=False lets NaN through.
        validate_data(self, X, dtype=None, ensure_all_finite=False)
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=None, ensure_all_finite=False, reset=False)
        return np.vectorize(cabin_deck, otypes=[object])(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True
        # The output is letters, never the input's float dtype.
        tags.transformer_tags.preserves_dtype = []
        return tags
