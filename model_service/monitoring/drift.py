"""Drift: how far the features of the traffic have moved from those of the training data.

Notebook 1 describes the training data in `training_profile.json` (profile_training_data);
the service (GET /stats) and notebook 3 sort the stored observations into the same bins
(count_bins) and compare the two with the population stability index (PSI). Both sides use
this one module, so that training and serving bin exactly alike. The service's side, at the
end: load_profile (at start-up: the profile, when it was written for the model served),
readable_columns (stored observations read as /predict reads them; rollups.py counts them in
the bins as the rows are written) and drift_report (the `drift` of /stats).

The bins are chosen so that the PSI is stable on a few hundred rows:

* a numeric column: about 10 bins cut at the training quantiles (each holds about a tenth
  of the training rows), plus a bin for missing values when the column can have them;
* a string or boolean column: one bin per category that holds at least 1 % of the training
  rows, one bin "(other)" for the rarer ones and for those never seen in training, and a bin
  for missing values. (Titanic's `Cabin` has about 186 values: one bin each would give a
  PSI of about 0.37 between two samples of 400 rows of the same distribution; pooled, 0.01.)

PSI = sum over the bins of (window share - training share) * ln(window share / training
share), each share raised to at least SHARE_FLOOR first, so that an empty bin cannot make
it infinite. Common reading: below 0.1 no real change, 0.1 to 0.25 a moderate one, above
0.25 a large one.
"""

import json
import logging
import math
from collections import Counter
from itertools import pairwise

import numpy as np
import pandas as pd

from model_service.parsing import check_observation

PROFILE_FILE = "training_profile.json"
QUANTILE_BINS = 10
RARE_SHARE = 0.01  # categories below this share of the training rows are pooled
SHARE_FLOOR = 0.001
OTHER = "(other)"
MISSING = "(missing)"

log = logging.getLogger("monitoring")

# ---------------------------------------------------------------------------------------
# The training profile (notebook 1), its bins, and the PSI
# ---------------------------------------------------------------------------------------


def profile_training_data(frame, model_version, **extra):
    """The profile of the training features: what training_profile.json holds.

    `model_version` is what the service calls the model (the first 12 hex digits of the
    SHA-256 of pipeline.pickle): with the column names, it records what the profile was
    written for, so that a profile left over from another model is never used.
    """
    return {
        "written_for": {"model_version": model_version, "columns": list(frame.columns)},
        "rows": len(frame),
        "share_floor": SHARE_FLOOR,
        "columns": {name: profile_column(frame[name]) for name in frame.columns},
        **extra,
    }


def profile_column(series):
    """One column's bins and the share of the training rows in each."""
    dtype = series.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        known = series.dropna().to_numpy(dtype=float)
        quantiles = np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1]
        # "inverted_cdf" cuts at values that occur in the data: readable bin names.
        edges = (
            np.unique(np.quantile(known, quantiles, method="inverted_cdf")) if len(known) else []
        )
        column = {"kind": "numeric", "edges": [float(edge) for edge in edges]}
    else:
        keys = pd.Series([category_key(v) for v in series if not is_missing(v)], dtype=object)
        shares = keys.value_counts().sort_index(kind="stable") / len(series)
        shares = shares.sort_values(ascending=False, kind="stable")
        column = {
            "kind": "categorical",
            "categories": [k for k, s in shares.items() if s >= RARE_SHARE],
        }
    # Integer and boolean dtypes cannot hold a missing value (the service refuses one).
    column["missing_bin"] = not (
        pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
    )
    column["bins"] = bin_labels(column)
    column["shares"] = (count_bins(column, series.tolist()) / len(series)).tolist()
    return column


def is_missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def category_key(value):
    """How a category is named in the profile: JSON's true/false for booleans."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def number_label(number):
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def bin_labels(column):
    """The name of every bin of a column profile, in order."""
    if column["kind"] == "numeric":
        edges = [number_label(edge) for edge in column["edges"]]
        if not edges:
            labels = ["any value"]
        else:
            labels = [f"<= {edges[0]}"]
            labels += [f"({low}, {high}]" for low, high in pairwise(edges)]
            labels.append(f"> {edges[-1]}")
    else:
        labels = [*column["categories"], OTHER]
    if column["missing_bin"]:
        labels.append(MISSING)
    return labels


def count_bins(column, values):
    """How many of `values` fall in each bin of a column profile (an array of counts).

    Numeric bins hold low < value <= high. A missing value is None or NaN; it goes to the
    missing bin (a ValueError when the column has none).
    """
    size = len(bin_labels(column))
    if column["kind"] == "numeric":
        numbers = np.array(values, dtype=float).reshape(-1)  # None becomes NaN
        missing = np.isnan(numbers)
        index = np.searchsorted(np.array(column["edges"], dtype=float), numbers[~missing])
        counts = np.bincount(index, minlength=size)
        missing_count = int(missing.sum())
    else:
        position = {category: i for i, category in enumerate(column["categories"])}
        other = len(column["categories"])
        counts, missing_count = np.zeros(size, dtype=np.int64), 0
        # Counting the distinct values first keeps the per-value work in C (Counter).
        for value, count in Counter(values).items():
            if is_missing(value):
                missing_count += count
            else:
                counts[position.get(category_key(value), other)] += count
    if missing_count and not column["missing_bin"]:
        raise ValueError("a missing value in a column that cannot have one")
    if column["missing_bin"]:
        counts[-1] = missing_count
    return counts


def population_stability_index(training_shares, window_shares, floor=SHARE_FLOOR):
    """PSI between two lists of shares over the same bins (see the module's docstring)."""
    training = np.maximum(np.asarray(training_shares, dtype=float), floor)
    window = np.maximum(np.asarray(window_shares, dtype=float), floor)
    return float(np.sum((window - training) * np.log(window / training)))


# ---------------------------------------------------------------------------------------
# The service: the profile read at start-up
# ---------------------------------------------------------------------------------------


def load_profile(model_dir, model):
    """(profile, None) when training_profile.json fits this model, else (None, why not)."""
    path = model_dir / PROFILE_FILE
    if not path.is_file():
        return None, (
            f"drift needs {PROFILE_FILE} beside the model's artifacts: notebook 1 "
            "writes it (make notebooks)"
        )
    try:
        profile = json.loads(path.read_text())
        written_for = profile["written_for"]
        version, columns = written_for["model_version"], written_for["columns"]
        if version != model.version or columns != model.columns:
            note = (
                f"{PROFILE_FILE} was written for another model (version {version}, "
                f"columns {columns}), not for this one (version {model.version}, columns "
                f"{model.columns}): write it again with notebook 1 along with the model"
            )
            log.warning("drift is off: %s", note)
            return None, note
        for column in model.columns:
            check_column_profile(profile["columns"][column])
    except (OSError, ValueError, KeyError, TypeError) as error:
        note = (
            f"{PROFILE_FILE} cannot be read ({type(error).__name__}: {error}): write "
            "it again with notebook 1"
        )
        log.warning("drift is off: %s", note)
        return None, note
    return profile, None


def check_column_profile(column):
    if column["kind"] not in ("numeric", "categorical"):
        raise ValueError(f"unknown kind {column['kind']!r}")
    if len(column["shares"]) != len(bin_labels(column)):
        raise ValueError("a column has more or fewer shares than bins")


# ---------------------------------------------------------------------------------------
# The service: the stored observations of a window, in the bins of the profile
# ---------------------------------------------------------------------------------------

# The Python types a value of each kind (model.kinds) may have in a stored body.
ALLOWED_TYPES = {
    "integer": {int},
    "float": {int, float, type(None)},
    "string": {str, type(None)},
    "boolean": {bool},
}


def readable_columns(bodies, model):
    """({column: values of the readable rows}, number of unreadable rows) for a chunk."""
    return readable_observations([observation_of(body, model.contract) for body in bodies], model)


def readable_observations(observations, model, unstored=()):
    """readable_columns of observations already read (observation_of: None, unreadable).

    `unstored`: features api.toml's [store] drops or hashes. Their stored values are not the
    ones scored: they are left out, and do not make a row unreadable."""
    bad = sum(observation is None for observation in observations)
    observations = [observation for observation in observations if observation is not None]
    kept = [column for column in model.columns if column not in unstored]
    columns = {c: [obs.get(c) for obs in observations] for c in kept}
    if all(plain_values(values, model.kinds[c], model.dtypes[c]) for c, values in columns.items()):
        return columns, bad
    # Some value needs a closer look: validate row by row, exactly as /predict does.
    ignored = {model.contract.field_name(column) for column in unstored}
    rows = []
    for observation in observations:
        values, problems = check_observation(observation, model)
        if problems.keys() - ignored:
            bad += 1
        else:
            rows.append(dict(zip(model.columns, values, strict=True)))
    return {c: [row[c] for row in rows] for c in kept}, bad


def observation_of(body, contract):
    """The object of features of a stored body, wherever the contract keeps it, or None
    (not JSON, not an object)."""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError, RecursionError):
        return None
    observation = contract.observation_of(payload) if isinstance(payload, dict) else None
    return observation if isinstance(observation, dict) else None


def plain_values(values, kind, dtype):
    """Whether validate_value would accept every value unchanged (a quick, sufficient test)."""
    if not {type(value) for value in values} <= ALLOWED_TYPES[kind]:
        return False
    if kind == "integer" and values:
        info = np.iinfo(dtype)
        return info.min <= min(values) and max(values) <= info.max
    if kind == "float":
        try:
            numbers = np.array(values, dtype=float)
        except OverflowError:  # an integer too large for a float
            return False
        return not (np.abs(numbers[~np.isnan(numbers)]) > np.finfo(dtype).max).any()
    return True


def drift_report(profile, profile_note, counts, readable, count):
    """({column: {"psi", "bins"}} or None, None or why there is no drift)."""
    if profile is None:
        return None, profile_note
    if count == 0:
        return None, "no predictions in the window"
    if readable == 0:
        return None, "no readable observations in the window"
    report = {}
    floor = profile.get("share_floor", SHARE_FLOOR)
    for column, column_counts in counts.items():
        column_profile = profile["columns"][column]
        shares = column_counts / readable
        report[column] = {
            "psi": population_stability_index(column_profile["shares"], shares, floor),
            "bins": [
                {"bin": label, "training": training, "window": float(share), "count": int(n)}
                for label, training, share, n in zip(
                    bin_labels(column_profile),
                    column_profile["shares"],
                    shares,
                    column_counts,
                    strict=True,
                )
            ],
        }
    return report, None
