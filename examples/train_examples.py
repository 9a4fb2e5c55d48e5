"""Train the example models that ship in examples/: one per kind of scikit-learn task.

The Titanic model at the repository root is a binary classifier. These three show what
else the service serves, each trained on a data set that scikit-learn bundles (nothing is
downloaded) and written the way notebook 1 writes its model:

* examples/wine/: a **multiclass classifier**. 178 wines, 13 chemical measurements, three
  cultivars. Its labels are strings ("class_0", "class_1", "class_2"): the service returns
  one probability per class, named by the label, not by a position.
* examples/diabetes/: a **regressor**. 442 patients, 10 baseline measurements in their raw
  units (age in years, sex coded 1 or 2, body mass index, blood pressure, six blood serum
  measurements s1 to s6); the model predicts one number, a measure of disease progression
  one year after baseline.
* examples/linnerud/: a **multi-output regressor**. 20 men, three exercises (chins, sit-ups,
  jumps); one model predicts two numbers, their weight (pounds) and waist (inches).
  `targets.json` names the outputs, in the order the model returns them.

Every folder holds pipeline.pickle, columns.json, dtypes.pickle and training_profile.json
(targets.json too, for a multi-output model). Serve one with, for example:

    MODEL_DIR=examples/wine make run

Each model is measured first on a quarter of the rows that it did not learn from (the
figures go in training_profile.json under "held_out"), then fitted again on every row:
that second fit is the model that ships. Every random step uses RANDOM_STATE, so running
the script again on the same machine writes the same files.

    .venv/bin/python examples/train_examples.py            # writes examples/<name>/
    .venv/bin/python examples/train_examples.py --out DIR  # writes DIR/<name>/
"""

import argparse
import hashlib
import json
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes, load_linnerud, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parent.parent  # the repository root, which holds model_service
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model_service.monitoring import drift  # noqa: E402 (needs the repository root on sys.path)

RANDOM_STATE = 42
HERE = Path(__file__).resolve().parent


@dataclass
class Example:
    name: str  # the folder under examples/
    pipeline: Pipeline
    X: pd.DataFrame  # the features, with the dtypes the service validates against
    y: pd.Series | pd.DataFrame  # a DataFrame for several targets, one column each
    scores: object  # scores(fitted pipeline, X_test, y_test) -> a dict of figures
    stratify: bool = False  # keep each class's share in both parts of the split


# ---------------------------------------------------------------------------------------
# The three examples
# ---------------------------------------------------------------------------------------


def wine():
    """Multiclass: the labels are the cultivars' names, so `classes_` holds strings."""
    data = load_wine(as_frame=True)
    names = data.target.map(lambda code: str(data.target_names[code])).rename("cultivar")
    # All 13 columns are measurements: float64, magnesium and proline included (the data
    # set records them in whole mg/l, but 101.5 is a valid value).
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return Example("wine", pipeline, data.data, names, classifier_scores, stratify=True)


def diabetes():
    """Regression: one number per patient, from raw (unscaled) measurements."""
    data = load_diabetes(as_frame=True, scaled=False)
    # Age is recorded in whole years and sex is a code (1 or 2): integers, so that the
    # service refuses 1.5. The other eight are measurements and stay float64.
    X = integer_columns(data.data, ["age", "sex"])
    y = data.target.rename("progression")
    return Example("diabetes", make_pipeline(StandardScaler(), Ridge()), X, y, regressor_scores)


def linnerud():
    """Multi-output regression: Ridge fits both targets at once from a 2-D y."""
    data = load_linnerud(as_frame=True)
    X = integer_columns(data.data, list(data.data.columns))  # counts of repetitions
    y = data.target[["Weight", "Waist"]]  # Pulse is left out
    return Example("linnerud", make_pipeline(StandardScaler(), Ridge()), X, y, regressor_scores)


def integer_columns(frame, columns):
    """`frame` with `columns` cast to int64, after checking that every value is whole."""
    values = frame[columns]
    if not (values == np.round(values)).all().all():
        raise ValueError(f"{columns} hold values that are not whole numbers")
    return frame.astype({column: "int64" for column in columns})


# ---------------------------------------------------------------------------------------
# Held-out figures
# ---------------------------------------------------------------------------------------


def classifier_scores(model, X_test, y_test):
    probabilities = model.predict_proba(X_test)
    predicted = model.predict(X_test)
    return {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "macro_f1": float(f1_score(y_test, predicted, average="macro")),
        "log_loss": float(log_loss(y_test, probabilities, labels=model.classes_)),
    }


def regressor_scores(model, X_test, y_test):
    predicted = model.predict(X_test)
    if isinstance(y_test, pd.Series):
        return regression_figures(y_test, predicted)
    targets = {
        name: regression_figures(y_test[name], predicted[:, i])
        for i, name in enumerate(y_test.columns)
    }
    return {"targets": targets}


def regression_figures(truth, predicted):
    return {
        "mae": float(mean_absolute_error(truth, predicted)),
        "rmse": float(root_mean_squared_error(truth, predicted)),
        "r2": float(r2_score(truth, predicted)),
    }


def measure_held_out(example):
    """Fit on three quarters of the rows and score on the last quarter."""
    X_train, X_test, y_train, y_test = train_test_split(
        example.X,
        example.y,
        test_size=0.25,
        random_state=RANDOM_STATE,
        stratify=example.y if example.stratify else None,
    )
    example.pipeline.fit(X_train, y_train)
    return {"rows": len(X_test), **example.scores(example.pipeline, X_test, y_test)}


# ---------------------------------------------------------------------------------------
# Train and write
# ---------------------------------------------------------------------------------------


def write_artifacts(folder, pipeline, X, held_out, targets=None):
    """Write what the service loads, as notebook 1 does (plus targets.json if given)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "columns.json").write_text(json.dumps(list(X.columns), indent=2) + "\n")
    with open(folder / "dtypes.pickle", "wb") as file:
        pickle.dump(X.dtypes, file)
    joblib.dump(pipeline, folder / "pipeline.pickle")
    if targets is not None:
        (folder / "targets.json").write_text(json.dumps(list(targets), indent=2) + "\n")

    model_version = hashlib.sha256((folder / "pipeline.pickle").read_bytes()).hexdigest()[:12]
    profile = drift.profile_training_data(X, model_version, held_out=held_out)
    (folder / drift.PROFILE_FILE).write_text(json.dumps(profile, indent=2) + "\n")
    return model_version


def train(example, out_dir):
    """Measure on held-out rows, refit on every row, write the artifacts."""
    held_out = measure_held_out(example)
    example.pipeline.fit(example.X, example.y)  # fit starts from scratch: all rows
    targets = list(example.y.columns) if isinstance(example.y, pd.DataFrame) else None
    folder = Path(out_dir) / example.name
    version = write_artifacts(folder, example.pipeline, example.X, held_out, targets)
    return folder, version, held_out


EXAMPLES = [wine, diabetes, linnerud]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--out", type=Path, default=HERE, help="where to write <name>/ (default: examples/)"
    )
    args = parser.parse_args(argv)
    for make_example in EXAMPLES:
        folder, version, held_out = train(make_example(), args.out)
        print(f"wrote {folder} (model {version}), held out: {json.dumps(held_out)}")


if __name__ == "__main__":
    main()
