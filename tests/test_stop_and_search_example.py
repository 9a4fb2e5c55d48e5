"""The stop-and-search example: what train_stop_and_search.py writes, and the story it tells.

Retrained pickles are not byte-identical from one machine to another (the order in which
BLAS sums differs), so retraining is compared by its predictions, within a relative 1e-9.
Later tests rely on the story of traffic.csv: at the brief's 10 % threshold, precision is
below 10 % at devon-and-cornwall and above it at every other station.
"""

import hashlib
import importlib.util
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_score, roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "train_stop_and_search.py"
FOLDER = ROOT / "examples" / "stop_and_search"
THRESHOLD = 0.1
LOW_STATION = "devon-and-cornwall"
COLUMNS = [
    "Type",
    "Date",
    "Part of a policing operation",
    "Latitude",
    "Longitude",
    "Gender",
    "Age range",
    "Officer-defined ethnicity",
    "Legislation",
    "Object of search",
    "station",
]


def read_json(path):
    return json.loads(path.read_text())


def read_dtypes(folder):
    with open(folder / "dtypes.pickle", "rb") as file:
        return pickle.load(file)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """The folder that `train_stop_and_search.py --out` writes, run from another directory."""
    out = tmp_path_factory.mktemp("retrained")
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        cwd=out,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out / "stop_and_search"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_stop_and_search", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        return module
    finally:
        del sys.modules[spec.name]


@pytest.fixture(scope="module")
def traffic():
    """traffic.csv, with each feature in its training dtype (as the service builds rows)."""
    frame = pd.read_csv(FOLDER / "traffic.csv")
    return frame.astype(read_dtypes(FOLDER))


@pytest.fixture(scope="module")
def pipeline():
    return joblib.load(FOLDER / "pipeline.pickle")


def probability(pipeline, traffic):
    return pipeline.predict_proba(traffic[COLUMNS])[:, 1]


def test_retraining_predicts_what_the_committed_pipeline_predicts(retrained, pipeline, traffic):
    again = joblib.load(retrained / "pipeline.pickle")
    expected = pipeline.predict_proba(traffic[COLUMNS])
    np.testing.assert_allclose(again.predict_proba(traffic[COLUMNS]), expected, rtol=1e-9, atol=0)


def test_retraining_writes_the_committed_columns_dtypes_traffic_and_profile(retrained):
    assert read_json(retrained / "columns.json") == read_json(FOLDER / "columns.json")
    assert list(read_dtypes(retrained).items()) == list(read_dtypes(FOLDER).items())
    # The data comes from the seeded generator, not from a fit: exactly the same.
    pd.testing.assert_frame_equal(
        pd.read_csv(retrained / "traffic.csv"), pd.read_csv(FOLDER / "traffic.csv")
    )
    profile, committed = (read_json(f / "training_profile.json") for f in (retrained, FOLDER))
    assert profile["columns"] == committed["columns"]
    assert profile["held_out"] == pytest.approx(committed["held_out"], rel=1e-9)


def test_columns_and_dtypes_are_the_briefs_fields():
    assert read_json(FOLDER / "columns.json") == COLUMNS
    dtypes = read_dtypes(FOLDER)
    # The string dtype of the Titanic artifacts.
    titanic_string = read_dtypes(ROOT / "examples" / "titanic")["Sex"]
    numbers = {"Latitude": np.float64, "Longitude": np.float64}
    expected = {column: numbers.get(column, titanic_string) for column in COLUMNS}
    expected["Part of a policing operation"] = np.bool_
    assert dict(dtypes) == expected


def test_committed_profile_is_written_for_the_committed_pipeline(pipeline, traffic):
    profile = read_json(FOLDER / "training_profile.json")
    version = hashlib.sha256((FOLDER / "pipeline.pickle").read_bytes()).hexdigest()[:12]
    assert profile["written_for"] == {"model_version": version, "columns": COLUMNS}
    assert list(pipeline.feature_names_in_) == COLUMNS
    # The held-out figures are those of traffic.csv, at the brief's threshold.
    held_out = profile["held_out"]
    truth, likelihood = traffic["outcome"], probability(pipeline, traffic)
    assert held_out["rows"] == len(traffic) == 400
    assert held_out["threshold"] == THRESHOLD
    assert held_out["roc_auc"] == pytest.approx(roc_auc_score(truth, likelihood), rel=1e-9)
    precision = precision_score(truth, likelihood >= THRESHOLD)
    assert held_out["precision"] == pytest.approx(precision, rel=1e-9)
    assert 0 <= held_out["accuracy"] <= 1


def test_labels_are_booleans(pipeline):
    assert list(pipeline.classes_) == [False, True]
    assert pipeline.classes_.dtype == bool


def test_traffic_is_newer_than_every_training_row(script, traffic):
    assert list(traffic.columns) == ["observation_id", *COLUMNS, "outcome"]
    assert traffic["outcome"].dtype == bool
    assert traffic["observation_id"].is_unique
    assert all(re.fullmatch(r"20\d\d-\d{6}", i) for i in traffic["observation_id"])
    X, _, ids = script.features_and_outcome(script.generate(np.random.default_rng(script.SEED)))
    trained = ~ids.isin(traffic["observation_id"])
    assert trained.sum() == len(X) - len(traffic)
    assert X.loc[trained, "Date"].max() <= traffic["Date"].min()  # one format: sorts as text


def test_precision_at_the_threshold_fails_at_one_station_only(pipeline, traffic):
    authorised = probability(pipeline, traffic) >= THRESHOLD
    precision = {
        station: precision_score(rows["outcome"], authorised[rows.index])
        for station, rows in traffic.reset_index(drop=True).groupby("station")
    }
    assert len(precision) == 8
    assert precision.pop(LOW_STATION) < THRESHOLD
    assert min(precision.values()) > THRESHOLD, precision
