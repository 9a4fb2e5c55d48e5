"""The tutorial's artifacts (examples/titanic) load cleanly and agree with each other.

They are the model of the template's own tests and of the README. The model at the
repository root, whatever it is, is checked by tests/test_your_model.py.
"""

import hashlib
import json
import pickle
import warnings

import joblib
import pandas as pd
from conftest import TITANIC

from custom_transformers import CabinDeck

COLUMNS = ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Cabin", "Embarked"]


def load_pipeline():
    with warnings.catch_warnings():
        # Any warning is an error, InconsistentVersionWarning first of all: a pickle written
        # by another scikit-learn version may load and still predict wrongly.
        warnings.simplefilter("error")
        return joblib.load(TITANIC / "pipeline.pickle")


def test_pipeline_loads_without_any_warning_under_the_pinned_versions():
    pipeline = load_pipeline()
    assert hasattr(pipeline, "predict_proba")


def test_columns_dtypes_and_pipeline_agree():
    columns = json.loads((TITANIC / "columns.json").read_text())
    with open(TITANIC / "dtypes.pickle", "rb") as file:
        dtypes = pickle.load(file)
    pipeline = load_pipeline()

    assert columns == COLUMNS
    assert isinstance(dtypes, pd.Series)
    assert list(dtypes.index) == columns
    assert list(pipeline.feature_names_in_) == columns
    assert pipeline.classes_.tolist() == [0, 1]
    assert all(type(label) is int for label in pipeline.classes_.tolist())


def test_dtypes_are_ones_the_service_can_validate():
    with open(TITANIC / "dtypes.pickle", "rb") as file:
        dtypes = pickle.load(file)
    kinds = {
        "integer": pd.api.types.is_integer_dtype,
        "float": pd.api.types.is_float_dtype,
        "string": lambda d: pd.api.types.is_string_dtype(d) or pd.api.types.is_object_dtype(d),
    }
    found = {c: next(k for k, test in kinds.items() if test(d)) for c, d in dtypes.items()}
    assert found == {
        "Pclass": "integer",
        "Sex": "string",
        "Age": "float",
        "SibSp": "integer",
        "Parch": "integer",
        "Fare": "float",
        "Cabin": "string",
        "Embarked": "string",
    }


def test_the_shipped_pipeline_uses_the_custom_transformer():
    deck = load_pipeline()["preprocess"].named_transformers_["deck"]
    assert isinstance(deck[0], CabinDeck)


def test_the_training_profile_was_written_for_this_pipeline():
    """The service ignores a profile written for another pickle: this one must match."""
    profile = json.loads((TITANIC / "training_profile.json").read_text())
    version = hashlib.sha256((TITANIC / "pipeline.pickle").read_bytes()).hexdigest()[:12]
    assert profile["written_for"] == {"model_version": version, "columns": COLUMNS}
