"""Loading the artifacts notebook 1 writes, and checking that they agree.

    model = load_model(model_dir)  # a LoadedModel: pipeline, columns, dtypes, task, contract

pipeline.pickle (the fitted pipeline), columns.json (the feature names, in order) and
dtypes.pickle (the training dtypes); then what the model does (tasks.py) and how it is
served over HTTP (api.toml, contract.py). A mismatch stops the service at once with one
sentence that says what to fix (a StartupError), instead of failing on the first request.
"""

import hashlib
import json
import logging
import pickle
import platform
import warnings
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import peewee
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from model_service.contract import ContractError, build_contract, read_contract_file
from model_service.errors import StartupError
from model_service.monitoring.drift import load_profile
from model_service.scoring import check_missing_values
from model_service.tasks import TaskError, read_task

log = logging.getLogger("app")

# Reported by /health: a pickle only predicts right under the versions it was made with.
LIBRARY_VERSIONS = {
    "python": platform.python_version(),
    "scikit-learn": sklearn.__version__,
    "pandas": pd.__version__,
    "numpy": np.__version__,
    "flask": package_version("flask"),
    "peewee": peewee.__version__,
}


@dataclass
class LoadedModel:
    """The loaded model and what the service needs to know about its input."""

    pipeline: object
    columns: list  # feature names, in training order
    dtypes: dict  # column -> training dtype
    kinds: dict  # column -> "integer", "float", "boolean" or "string" (how to validate)
    task: object  # what it predicts and how it answers (tasks.py): binary, multiclass...
    version: str  # a short hash of pipeline.pickle: stored with every row it answers
    contract: object  # how it is served over HTTP: routes, ids, answers (contract.py)


def load_model(model_dir, threshold=None, positive_class=None):
    """Load the artifacts and check they agree; read the task, and the contract (api.toml).

    `threshold` and `positive_class` (the settings THRESHOLD and POSITIVE_CLASS) win over
    api.toml's [model] table: a Railway variable changes them without a new commit.
    """
    model_dir = Path(model_dir)
    columns = load_columns(model_dir / "columns.json")
    dtypes = load_dtypes(model_dir / "dtypes.pickle")
    pipeline = load_pipeline(model_dir / "pipeline.pickle")

    if sorted(dtypes) != sorted(columns):
        raise StartupError(
            f"columns.json and dtypes.pickle in {model_dir} name different columns "
            f"({sorted(set(columns) ^ set(dtypes))}); write both again with notebook 1."
        )
    trained_on = list(getattr(pipeline, "feature_names_in_", columns))
    if trained_on != columns:
        raise StartupError(
            f"pipeline.pickle was trained on the columns {trained_on} but columns.json "
            f"lists {columns}; write the three artifacts again with notebook 1."
        )
    kinds = {column: column_kind(column, dtypes[column]) for column in columns}
    try:
        tables = read_contract_file(model_dir)
        brief = tables.get("model", {})
        task = read_task(
            pipeline,
            model_dir,
            threshold=brief.get("threshold") if threshold is None else threshold,
            positive_class=brief.get("positive_class")
            if positive_class is None
            else positive_class,
            targets=brief.get("targets"),
        )
        contract = build_contract(tables, task, columns, kinds)
    except (TaskError, ContractError) as error:
        raise StartupError(str(error)) from None
    version = hashlib.sha256((model_dir / "pipeline.pickle").read_bytes()).hexdigest()[:12]
    dtypes = {c: dtypes[c] for c in columns}
    model = LoadedModel(pipeline, columns, dtypes, kinds, task, version, contract)
    if contract.invalid == "as_missing":
        check_missing_values_are_scored(model, model_dir)
    return model


def check_missing_values_are_scored(model, model_dir):
    """api.toml [predict] invalid = "as_missing": a StartupError naming a column whose
    missing value the pipeline cannot score (scoring.check_missing_values)."""
    profile, note = load_profile(model_dir, model)
    if profile is None:
        log.info(
            "invalid = as_missing: no usable training profile (%s); missing values are checked "
            "on a row of the pipeline's categories and zeros",
            note,
        )
    skipped = check_missing_values(model, profile)
    if skipped:
        log.warning("invalid = as_missing: missing values not checked: %s", skipped)


def load_columns(path):
    try:
        columns = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StartupError(f"Cannot read {path} ({error}); write it with notebook 1.") from None
    if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
        raise StartupError(f"{path} must hold a JSON list of column names; see notebook 1.")
    if len(set(columns)) != len(columns):
        raise StartupError(f"{path} names a column twice; write it again with notebook 1.")
    return columns


def load_dtypes(path):
    try:
        with open(path, "rb") as file:
            dtypes = pickle.load(file)
        return {
            str(column): pd.api.types.pandas_dtype(dtype) for column, dtype in dict(dtypes).items()
        }
    except Exception as error:  # a missing, truncated or foreign file: all mean "write it again"
        raise StartupError(
            f"Cannot read {path} ({type(error).__name__}: {error}); "
            "write it again with notebook 1 (pickle.dump(X.dtypes, file))."
        ) from None


def load_pipeline(path):
    """joblib.load, turning the usual failures into one sentence that says what to do."""
    if not path.is_file():
        raise StartupError(f"{path} does not exist; create it with notebook 1.")
    try:
        with warnings.catch_warnings():
            # A pickle from another scikit-learn version may load but predict wrongly.
            warnings.simplefilter("error", InconsistentVersionWarning)
            pipeline = joblib.load(path)
    except InconsistentVersionWarning as warning:
        raise StartupError(
            f"{path} was written by scikit-learn {warning.original_sklearn_version} but "
            f"scikit-learn {warning.current_sklearn_version} is installed; pin "
            f"scikit-learn=={warning.original_sklearn_version} in requirements_prod.txt "
            "or retrain the model with notebook 1."
        ) from None
    except ModuleNotFoundError as error:
        raise StartupError(
            f"{path} needs the module '{error.name}', which cannot be imported; keep the "
            "package that defines your custom transformers next to app.py and install what "
            "it needs."
        ) from None
    except Exception as error:
        raise StartupError(
            f"Cannot load {path} ({type(error).__name__}: {error}); the file is damaged or "
            "not a joblib pickle: write it again with notebook 1."
        ) from None
    if not hasattr(pipeline, "predict"):
        raise StartupError(f"{path} is not a fitted scikit-learn model (it has no predict).")
    return pipeline


def column_kind(column, dtype):
    """How a JSON value for this column is validated: by the dtype it was trained with."""
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "string"
    raise StartupError(
        f"Column {column!r} has the dtype {dtype}, which JSON cannot carry; convert it to a "
        "number or a string before training."
    )
