"""Step 2 of a request: the pipeline's predictions for several observations in one call.

    score_each(rows, model)  # an output (tasks.py) or an ApiError per validated row

The model's fixed cost per call (~9 ms) dwarfs the cost per row, so the requests that
arrive together are scored together (batching.py) and a batch that the model refuses is
scored again row by row. check_missing_values is the start-up check of api.toml's
invalid = "as_missing": can the pipeline take a missing value in every column?
"""

import math

import numpy as np
import pandas as pd

from model_service.errors import ApiError, StartupError
from model_service.values import is_missing


def predict_outputs(rows, model):
    """Score several observations in one call (its fixed cost is ~9 ms): an output each.

    An output is a dict of JSON values (tasks.py): for a binary classifier the probability
    of the positive class, the decision and the label; for a regressor the number(s).
    """
    try:
        return model.task.predict(model.pipeline, frame_of(rows, model))
    except ValueError as error:  # e.g. a category the pipeline refuses
        raise ApiError(422, f"The model cannot score this observation: {error}") from None


# The kinds of column whose training dtype (int64, bool) cannot hold NaN.
STRICT_KINDS = ("integer", "boolean")


def frame_of(rows, model):
    """The rows as a frame of the training dtypes.

    In "as_missing" mode an integer or boolean column that holds a missing value becomes
    float64 or object instead: NaN fits those, and the pipeline's imputer fills it.
    """
    frame = pd.DataFrame(rows, columns=model.columns)
    if model.contract.invalid != "as_missing":
        return frame.astype(model.dtypes)
    dtypes = dict(model.dtypes)
    for column in model.columns:
        kind, dtype = model.kinds[column], dtypes[column]
        # A pandas extension dtype (Int64, boolean) holds a missing value itself.
        if kind in STRICT_KINDS and isinstance(dtype, np.dtype) and frame[column].isna().any():
            dtypes[column] = np.float64 if kind == "integer" else object
    return frame.astype(dtypes)


def score_each(rows, model):
    """An output or an ApiError per row (score_together), in the order of `rows`.

    In "as_missing" mode, the rows with a missing integer or boolean value are scored apart
    from the others: their frame takes other dtypes (frame_of), which must not change the
    answer of any other row.
    """
    if model.contract.invalid != "as_missing":  # then no such value gets this far
        return score_together(rows, model)
    columns = [i for i, c in enumerate(model.columns) if model.kinds[c] in STRICT_KINDS]
    apart = [any(is_missing(row[i]) for i in columns) for row in rows]
    outcomes = [None] * len(rows)
    for group in (False, True):
        indices = [k for k, flag in enumerate(apart) if flag is group]
        if indices:
            scored = score_together([rows[k] for k in indices], model)
            for k, outcome in zip(indices, scored, strict=True):
                outcomes[k] = outcome
    return outcomes


def score_together(rows, model):
    """An output or an ApiError per row: one call for all, row by row if it fails.

    The model refuses a whole frame when one row is bad; scoring that batch again one row
    at a time gives every good row its answer and the bad one its 422.
    """
    try:
        return predict_outputs(rows, model)
    except ApiError as error:
        if len(rows) == 1:
            return [error]
    outcomes = []
    for row in rows:
        try:
            outcomes.append(predict_outputs([row], model)[0])
        except ApiError as error:
            outcomes.append(error)
    return outcomes


def check_missing_values(model, profile):
    """At start-up in "as_missing" mode: can the pipeline take a missing value anywhere?

    A typical row (typical_row) is scored with one column at a time missing: a column where
    the pipeline raises, or answers NaN, is a StartupError naming it. Returns None when
    checked, or why the check was skipped (the typical row itself cannot be scored).
    """
    row, source = typical_row(model, profile)
    problem = scoring_problem(row, model)
    if problem:
        return f"a typical row built from {source} cannot be scored ({problem})"
    for index, column in enumerate(model.columns):
        problem = scoring_problem([*row[:index], math.nan, *row[index + 1 :]], model)
        if problem:
            raise StartupError(
                f'api.toml [predict] invalid = "as_missing": the pipeline cannot score a '
                f"missing {column} ({problem}); add an imputer for it or keep "
                'invalid = "reject".'
            )
    return None


def scoring_problem(row, model):
    """What goes wrong when the pipeline scores this row (one line), or None."""
    try:
        output = model.task.predict(model.pipeline, frame_of([row], model))[0]
    except Exception as error:  # whatever the pipeline raises, it cannot take the row
        lines = str(error).strip().splitlines()
        return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    if not all_finite(output):
        return "it answers NaN"
    return None


def all_finite(output):
    if isinstance(output, dict):
        return all(all_finite(value) for value in output.values())
    return not isinstance(output, float) or math.isfinite(output)


def typical_row(model, profile):
    """(values, where they come from): a valid row the pipeline should score.

    From training_profile.json (drift.py) when there is one: a numeric column's middle bin
    edge, a categorical one's most common category. Else, or where the profile has none:
    the first category the pipeline's fitted encoders know, 0, false or "".
    """
    known = fitted_categories(model.pipeline)
    fallback = {"integer": 0, "float": 0.0, "boolean": False, "string": ""}
    values = []
    for column in model.columns:
        kind = model.kinds[column]
        described = profile["columns"][column] if profile else {}
        value = profile_value(described, kind)
        if value is None:
            value = known.get(column, "") if kind == "string" else fallback[kind]
        values.append(value)
    return values, ("training_profile.json" if profile else "the pipeline's categories and zeros")


def profile_value(described, kind):
    """A column's typical value from its training profile, in its kind, or None."""
    edges, categories = described.get("edges") or [], described.get("categories") or []
    if kind in ("integer", "float") and edges:
        middle = edges[len(edges) // 2]
        return int(middle) if kind == "integer" else float(middle)
    if kind == "boolean" and categories:
        return categories[0] == "true"  # drift.category_key writes booleans so
    if kind == "string" and categories:
        return categories[0]
    return None


def fitted_categories(estimator):
    """{column: its first known string category} from the fitted encoders (categories_) of
    a pipeline's column transformers, as far as they can be matched to columns."""
    found = {}
    for _, transformer, columns in getattr(estimator, "transformers_", []):
        categories = encoder_categories(transformer)
        names = list(columns) if isinstance(columns, list | tuple | np.ndarray) else []
        if categories is not None and len(categories) == len(names):
            for name, known in zip(names, categories, strict=True):
                strings = [category for category in known if isinstance(category, str)]
                if strings:
                    found[str(name)] = strings[0]
    for _, step in getattr(estimator, "steps", []):
        found.update(fitted_categories(step))
    return found


def encoder_categories(transformer):
    """The categories_ of a transformer, or of the first step of it that has them."""
    if hasattr(transformer, "categories_"):
        return transformer.categories_
    for _, step in getattr(transformer, "steps", []):
        categories = encoder_categories(step)
        if categories is not None:
            return categories
    return None
