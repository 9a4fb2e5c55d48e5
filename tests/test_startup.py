"""Start-up checks of the artifacts: each mistake a student makes gets one clear sentence.

(test_faults.py runs the real server on broken artifacts; these check each rule directly.)
"""

import json
import pickle
import shutil

import joblib
import pandas as pd
import pytest
from conftest import TITANIC, service
from sklearn.cluster import KMeans
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import LinearSVC

ARTIFACTS = ("pipeline.pickle", "columns.json", "dtypes.pickle")


@pytest.fixture
def model_dir(tmp_path):
    """A copy of the tutorial's artifacts (examples/titanic) that a test may break."""
    for name in ARTIFACTS:
        shutil.copy(TITANIC / name, tmp_path / name)
    return tmp_path


def start(model_dir, tmp_path):
    return service.create_app(
        {"MODEL_DIR": str(model_dir), "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    )


def fit_classifier(frame, labels):
    return make_pipeline(FunctionTransformer(), DummyClassifier()).fit(frame, labels)


def test_the_shipped_artifacts_start(model_dir, tmp_path):
    model = start(model_dir, tmp_path).config["MODEL"]
    assert set(model.kinds.values()) == {"integer", "float", "string"}


def test_columns_in_another_order_than_the_pipeline_saw(model_dir, tmp_path):
    columns = json.loads((model_dir / "columns.json").read_text())
    (model_dir / "columns.json").write_text(json.dumps(columns[::-1]))
    with pytest.raises(service.StartupError, match="pipeline.pickle was trained on the columns"):
        start(model_dir, tmp_path)


def test_columns_json_must_be_a_list_of_names(model_dir, tmp_path):
    for text in ('{"Pclass": 1}', "[]", '["Age", "Age"]', "not json"):
        (model_dir / "columns.json").write_text(text)
        with pytest.raises(service.StartupError, match="columns.json"):
            start(model_dir, tmp_path)


def test_a_dtype_json_cannot_carry_is_refused(model_dir, tmp_path):
    frame = pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-01-02"])})
    joblib.dump(fit_classifier(frame, [0, 1]), model_dir / "pipeline.pickle")
    (model_dir / "columns.json").write_text('["when"]')
    (model_dir / "dtypes.pickle").write_bytes(pickle.dumps(frame.dtypes))
    with pytest.raises(service.StartupError, match="Column 'when' has the dtype datetime64"):
        start(model_dir, tmp_path)


def write_model(model_dir, estimator, frame, labels):
    joblib.dump(
        make_pipeline(FunctionTransformer(), estimator).fit(frame, labels),
        model_dir / "pipeline.pickle",
    )
    (model_dir / "columns.json").write_text(json.dumps(list(frame.columns)))
    (model_dir / "dtypes.pickle").write_bytes(pickle.dumps(frame.dtypes))


@pytest.mark.parametrize(
    ("labels", "task"),
    [(["no", "yes"], "binary"), ([False, True], "binary"), ([0, 1, 2], "multiclass")],
)
def test_classifiers_of_any_labels_are_served(model_dir, tmp_path, labels, task):
    frame = pd.DataFrame({"x": range(len(labels))})
    write_model(model_dir, DummyClassifier(), frame, labels)
    model = start(model_dir, tmp_path).config["MODEL"]
    assert model.task.name == task
    assert model.task.classes == labels
    assert all(type(label) is type(labels[0]) for label in model.task.classes)  # not numpy


@pytest.mark.parametrize(
    ("estimator", "labels", "message"),
    [
        (KMeans(n_clusters=2, n_init=1), None, "neither a classifier nor a regressor"),
        (LinearSVC(), [0, 1], "cannot give probabilities"),
        (LinearRegression(), [[1.0, 2.0], [3.0, 4.0]], "name them, in order, in targets.json"),
    ],
)
def test_a_model_that_cannot_be_served_says_what_to_change(
    model_dir, tmp_path, estimator, labels, message
):
    write_model(model_dir, estimator, pd.DataFrame({"x": [0.0, 1.0]}), labels)
    with pytest.raises(service.StartupError, match=message):
        start(model_dir, tmp_path)


def test_targets_json_must_name_every_output(model_dir, tmp_path):
    write_model(model_dir, LinearRegression(), pd.DataFrame({"x": [0.0, 1.0]}), [[1, 2], [3, 4]])
    (model_dir / "targets.json").write_text('["a", "b", "c"]')
    with pytest.raises(service.StartupError, match="names 3 targets .* predicts 2 numbers"):
        start(model_dir, tmp_path)
    (model_dir / "targets.json").write_text('["a", "b"]')
    assert start(model_dir, tmp_path).config["MODEL"].task.targets == ["a", "b"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"THRESHOLD": 1.5}, "THRESHOLD=1.5 must be a number from 0 to 1"),
        ({"THRESHOLD": -0.1}, "THRESHOLD=-0.1 must be a number from 0 to 1"),
        ({"POSITIVE_CLASS": "2"}, 'POSITIVE_CLASS="2" is not a class of this model'),
    ],
)
def test_a_threshold_or_positive_class_that_cannot_work_stops_the_start(
    model_dir, tmp_path, settings, message
):
    with pytest.raises(service.StartupError, match=message):
        service.create_app(
            {
                "MODEL_DIR": str(model_dir),
                "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}",
                **settings,
            }
        )


def test_the_positive_class_is_read_from_its_text(monkeypatch, model_dir, tmp_path):
    """Environment variables are text: POSITIVE_CLASS=0 names the integer class 0."""
    monkeypatch.setenv("POSITIVE_CLASS", "0")
    monkeypatch.setenv("THRESHOLD", "0.25")
    task = start(model_dir, tmp_path).config["MODEL"].task
    assert (task.positive_class, task.negative_class, task.threshold) == (0, 1, 0.25)


def test_another_model_with_other_columns_is_served(model_dir, tmp_path):
    """What a student does: swap in their own pipeline with their own columns and dtypes."""
    frame = pd.DataFrame(
        {
            "rooms": [1, 2, 3, 4],
            "area": [20.5, 40.0, 60.0, 90.0],
            "city": ["a", "b", "a", "b"],
            "garden": [False, True, False, True],
        }
    )
    joblib.dump(fit_classifier(frame, [0, 0, 1, 1]), model_dir / "pipeline.pickle")
    (model_dir / "columns.json").write_text(json.dumps(list(frame.columns)))
    (model_dir / "dtypes.pickle").write_bytes(pickle.dumps(frame.dtypes))
    client = start(model_dir, tmp_path).test_client()

    observation = {"rooms": 3.0, "area": None, "city": "c", "garden": True}
    response = client.post("/predict", json={"id": 1, "observation": observation})
    assert response.json == {"proba": 0.5}
    refused = client.post("/predict", json={"id": 2, "observation": dict(observation, garden=1)})
    assert refused.status_code == 422
    assert refused.json["error"] == "observation.garden must be true or false, got an integer"


def test_a_bad_number_in_the_environment_is_a_clear_error(monkeypatch, model_dir, tmp_path):
    monkeypatch.setenv("MAX_REQUEST_BYTES", "64k")
    with pytest.raises(service.StartupError, match="MAX_REQUEST_BYTES='64k' must be a number"):
        start(model_dir, tmp_path)


@pytest.mark.parametrize("url", ["predictions.db", "postgresq://u:pw@h/db", "mysql://u:pw@h/db"])
def test_a_database_url_that_cannot_work_is_a_clear_error_without_the_password(model_dir, url):
    settings = {"MODEL_DIR": str(model_dir), "DATABASE_URL": url}
    with pytest.raises(service.StartupError, match="is not a database URL") as error:
        service.create_app(settings)
    assert "pw" not in str(error.value)
