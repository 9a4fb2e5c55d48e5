"""The example models in examples/: what train_examples.py writes, and fit for their task.

Retrained pickles are not byte-identical from one machine to another (the order in which
BLAS sums differs), so retraining is compared by its predictions, within a relative 1e-9.
"""

import hashlib
import importlib.util
import json
import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NAMES = ["wine", "diabetes", "linnerud"]


@pytest.fixture(scope="module")
def training_rows():
    """name -> the training features, as train_examples.py builds them."""
    spec = importlib.util.spec_from_file_location("train_examples", EXAMPLES / "train_examples.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    try:
        spec.loader.exec_module(script)
        return {example.name: example.X for example in [make() for make in script.EXAMPLES]}
    finally:
        del sys.modules[spec.name]


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """The folder that `train_examples.py --out` writes, run from another directory."""
    out = tmp_path_factory.mktemp("retrained")
    subprocess.run(
        [sys.executable, str(EXAMPLES / "train_examples.py"), "--out", str(out)],
        cwd=out,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


def load(folder, name):
    return joblib.load(folder / name / "pipeline.pickle")


def predictions(pipeline, X):
    return pipeline.predict_proba(X) if hasattr(pipeline, "predict_proba") else pipeline.predict(X)


def read_json(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", NAMES)
def test_retraining_predicts_what_the_committed_pipeline_predicts(name, retrained, training_rows):
    X = training_rows[name]
    committed, again = load(EXAMPLES, name), load(retrained, name)
    expected = predictions(committed, X)
    np.testing.assert_allclose(predictions(again, X), expected, rtol=1e-9, atol=0)
    if name == "wine":  # and the same labels
        assert (again.predict(X) == committed.predict(X)).all()


@pytest.mark.parametrize("name", NAMES)
def test_retraining_writes_the_committed_columns_dtypes_and_targets(name, retrained):
    committed, again = EXAMPLES / name, retrained / name
    assert read_json(again / "columns.json") == read_json(committed / "columns.json")
    with open(committed / "dtypes.pickle", "rb") as a, open(again / "dtypes.pickle", "rb") as b:
        assert list(pickle.load(b).items()) == list(pickle.load(a).items())
    assert (again / "targets.json").exists() == (committed / "targets.json").exists()
    if (committed / "targets.json").exists():
        assert read_json(again / "targets.json") == read_json(committed / "targets.json")


@pytest.mark.parametrize("name", NAMES)
def test_committed_profile_is_written_for_the_committed_pipeline(name):
    folder = EXAMPLES / name
    profile = read_json(folder / "training_profile.json")
    version = hashlib.sha256((folder / "pipeline.pickle").read_bytes()).hexdigest()[:12]
    columns = read_json(folder / "columns.json")
    assert profile["written_for"] == {"model_version": version, "columns": columns}
    assert list(load(EXAMPLES, name).feature_names_in_) == columns
    assert profile["held_out"]["rows"] > 0


def test_wine_predicts_string_classes(training_rows):
    pipeline = load(EXAMPLES, "wine")
    assert [str(label) for label in pipeline.classes_] == ["class_0", "class_1", "class_2"]
    assert all(isinstance(label, str) for label in pipeline.classes_)
    assert pipeline.predict_proba(training_rows["wine"]).shape == (178, 3)


def test_linnerud_predicts_two_outputs_named_by_targets_json(training_rows):
    predicted = load(EXAMPLES, "linnerud").predict(training_rows["linnerud"])
    assert predicted.shape == (20, 2)
    assert read_json(EXAMPLES / "linnerud" / "targets.json") == ["Weight", "Waist"]
    held_out = read_json(EXAMPLES / "linnerud" / "training_profile.json")["held_out"]
    assert list(held_out["targets"]) == ["Weight", "Waist"]


def test_diabetes_predicts_one_number_per_row(training_rows):
    predicted = load(EXAMPLES, "diabetes").predict(training_rows["diabetes"])
    assert predicted.shape == (442,)
    assert not (EXAMPLES / "diabetes" / "targets.json").exists()
