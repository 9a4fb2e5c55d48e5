"""Any task, through gunicorn: every answer is the pipeline's own, every row knows its model.

One server per model and database, serving observations from 16 clients at once (so that
micro-batching scores many of them together): binary classifiers with integer, boolean and
string labels, a multiclass classifier with string labels, a regressor and a two-target
regressor. Each answer is compared with the pipeline's own predict_proba / predict computed
here (relative 1e-9: another process, other batches), a retry answers the stored answer bit
for bit, and the stored row carries the model version and the rule of the decision.
"""

import json
import math
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import EXAMPLE, ROOT, TITANIC, probabilities, same_probability, service
from reliability_helpers import random_observations
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_diabetes, load_linnerud, load_wine
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from model_service import artifacts, parsing, tasks

TOKEN = "tasks-admin-token"
ARTIFACTS = ("pipeline.pickle", "columns.json", "dtypes.pickle")


@dataclass
class Served:
    """A model to serve: its folder, settings, observations and a true value for each."""

    model_dir: Path
    observations: list
    truths: list  # what /update sends for each observation
    settings: dict = field(default_factory=dict)

    @property
    def pipeline(self):
        return joblib.load(self.model_dir / "pipeline.pickle")

    def frame(self):
        dtypes = pd.read_pickle(self.model_dir / "dtypes.pickle")
        columns = json.loads((self.model_dir / "columns.json").read_text())
        return pd.DataFrame(self.observations, columns=columns).astype(dtypes.to_dict())


def records(frame):
    """Rows as JSON objects of plain Python values (what a client sends)."""
    return [
        {column: value.item() if hasattr(value, "item") else value for column, value in row.items()}
        for row in frame.astype(object).to_dict("records")
    ]


def titanic_with_labels(folder, labels, threshold):
    """The tutorial's passengers, with a model of our own that predicts `labels`."""
    observations = random_observations(60, seed=15)
    frame = pd.DataFrame(observations).astype(pd.read_pickle(TITANIC / "dtypes.pickle").to_dict())
    survived = (frame["Sex"] == "female") ^ (frame["Pclass"] == 3)  # a pattern to learn
    y = np.where(survived, labels[1], labels[0])
    pipeline = make_pipeline(
        make_column_transformer(
            (make_pipeline(SimpleImputer(), "passthrough"), ["Pclass", "Age", "SibSp", "Fare"]),
            (
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["Sex", "Embarked"],
            ),
        ),
        LogisticRegression(max_iter=1000),
    ).fit(frame, y)
    folder.mkdir()
    for name in ("columns.json", "dtypes.pickle"):
        shutil.copy(TITANIC / name, folder / name)
    joblib.dump(pipeline, folder / "pipeline.pickle")
    truths = [labels[k % 2] for k in range(len(observations))]
    return Served(folder, observations, truths, {"THRESHOLD": str(threshold)})


def from_data_set(folder, frame, truths):
    columns = json.loads((folder / "columns.json").read_text())
    dtypes = pd.read_pickle(folder / "dtypes.pickle").to_dict()
    return Served(folder, records(frame[columns].astype(dtypes).head(60)), truths[:60])


def wine():
    data = load_wine(as_frame=True)
    labels = [str(data.target_names[k]) for k in data.target]
    return from_data_set(ROOT / "examples" / "wine", data.frame, labels)


def diabetes():
    data = load_diabetes(as_frame=True, scaled=False)
    return from_data_set(ROOT / "examples" / "diabetes", data.frame, data.target.tolist())


def linnerud():
    data = load_linnerud(as_frame=True)
    truths = data.target[["Weight", "Waist"]].astype(float).to_dict("records")
    return from_data_set(ROOT / "examples" / "linnerud", data.data, truths)


@pytest.fixture(scope="module")
def served(request, tmp_path_factory):
    name = request.param
    folder = tmp_path_factory.mktemp("models") / name
    if name == "binary-integer":  # the tutorial's own model, at the boundary of 0.5 apart
        observations = random_observations(60, seed=13)
        return Served(TITANIC, observations, [k % 2 for k in range(60)], {})
    if name == "binary-boolean":
        return titanic_with_labels(folder, [False, True], 0.5)
    if name == "binary-string":  # the capstone's "authorise above 10 %"
        return titanic_with_labels(folder, ["no", "yes"], 0.1)
    return {"multiclass-string": wine, "regression": diabetes, "two-targets": linnerud}[name]()


MODELS = [
    "binary-integer",
    "binary-boolean",
    "binary-string",
    "multiclass-string",
    "regression",
    "two-targets",
]


def expected_outputs(served):
    """What the pipeline says of each observation, computed here."""
    pipeline, frame = served.pipeline, served.frame()
    if hasattr(pipeline, "predict_proba"):
        return pipeline.predict_proba(frame), pipeline.classes_.tolist()
    return np.asarray(pipeline.predict(frame), dtype=float), None


def check_answer(answer, expected, classes, served):
    """One /predict answer against the pipeline's numbers for that observation."""
    if classes is not None and len(classes) == 2:
        assert set(answer) == {"proba"}
        assert same_probability(answer["proba"], expected[1])
    elif classes is not None:
        assert answer["label"] == classes[int(np.argmax(expected))]
        assert list(answer["probabilities"]) == classes  # string classes: the JSON keys
        for p, q in zip(answer["probabilities"].values(), expected, strict=True):
            assert same_probability(p, q)
    elif np.ndim(expected) == 0:
        assert math.isclose(answer["prediction"], expected, rel_tol=1e-9)
    else:
        names = json.loads((served.model_dir / "targets.json").read_text())
        assert list(answer["prediction"]) == names
        for name, number in zip(names, expected, strict=True):
            assert math.isclose(answer["prediction"][name], number, rel_tol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("served", MODELS, indirect=True)
def test_every_task_answers_what_its_pipeline_computes(served, start_server, database_url):
    server = start_server(
        database_url,
        workers=1,
        env={"MODEL_DIR": str(served.model_dir), "ADMIN_TOKEN": TOKEN, **served.settings},
    )
    health = requests.get(f"{server.url}/health", timeout=10).json()["model"]
    expected, classes = expected_outputs(served)
    bodies = [{"id": k, "observation": obs} for k, obs in enumerate(served.observations)]

    with ThreadPoolExecutor(16) as clients:
        answers = list(clients.map(lambda body: post(server, "/predict", body), bodies))
    for (status, answer), numbers in zip(answers, expected, strict=True):
        assert status == 200, answer
        check_answer(answer, numbers, classes, served)

    # A retry answers the stored answer, bit for bit; another observation is a conflict.
    assert post(server, "/predict", bodies[0]) == answers[0]
    assert post(server, "/predict", {"id": 0, "observation": served.observations[1]})[0] == 409

    rows = {row["observation_id"]: row for row in listed_rows(server)}
    for k, (_, answer) in enumerate(answers):
        row = rows[k]
        assert row["model_version"] == health["version"]
        check_stored_row(row, answer, health)

    check_updates(server, served, health)


def check_stored_row(row, answer, health):
    if health["task"] == "binary":
        assert row["proba"] == answer["proba"]  # exactly
        assert row["threshold"] == health["threshold"]
        assert row["positive_class"] == health["positive_class"]
        decision = row["proba"] >= health["threshold"]
        assert row["prediction"]["decision"] is decision
        others = [c for c in health["classes"] if c != health["positive_class"]]
        assert row["prediction"]["label"] == (health["positive_class"] if decision else others[0])
    elif health["task"] == "multiclass":
        assert row["prediction"] == answer
        assert row["proba"] is None
    else:
        prediction = answer["prediction"]
        assert row["prediction"] == (
            prediction if isinstance(prediction, dict) else {"value": prediction}
        )


def check_updates(server, served, health):
    field_name = "true_value" if health["task"] == "regression" else "true_class"
    for k in (0, 1):
        status, row = post(server, "/update", {"id": k, field_name: served.truths[k]})
        assert status == 200, row
        assert row[field_name] == served.truths[k]
        assert type(row[field_name]) is type(served.truths[k])
    # A value of the wrong type is refused, naming the field, and nothing is written.
    wrong = {"binary": "1", "multiclass": 7, "regression": "151"}[health["task"]]
    status, error = post(server, "/update", {"id": 2, field_name: wrong})
    assert status == 422 and error["error"].startswith(field_name), error
    assert {row["observation_id"]: row[field_name] for row in listed_rows(server)}[2] is None


def post(server, path, body):
    response = requests.post(f"{server.url}{path}", json=body, timeout=30)
    return response.status_code, response.json()


def listed_rows(server):
    response = requests.get(
        f"{server.url}/list-db-contents?limit=1000",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200
    return response.json()["predictions"]


# --- In-process: the rules themselves ---------------------------------------------------


def test_the_decision_is_probability_at_or_above_the_threshold_at_the_boundary(database_url):
    """A threshold equal to the probability itself decides yes; one ulp above it, no."""
    model = artifacts.load_model(TITANIC)
    p = probabilities([parsing.validate_observation(EXAMPLE, model)], model)[0]
    for observation_id, (threshold, decision) in enumerate(
        [(p, True), (math.nextafter(p, 1), False)]
    ):
        settings = {"DATABASE_URL": database_url, "THRESHOLD": threshold}
        client = service.create_app(settings).test_client()
        body = {"id": observation_id, "observation": EXAMPLE}
        assert client.post("/predict", json=body).json == {"proba": p}
        row = client.post("/update", json={"id": observation_id, "true_class": 1}).json
        assert (row["threshold"], row["prediction"]["decision"]) == (threshold, decision)
        assert row["prediction"]["label"] == (1 if decision else 0)


@pytest.mark.parametrize(
    ("task", "value", "stored"),
    [
        (tasks.BinaryClassifier([0, 1]), 1.0, 1),  # pandas writes 1 as 1.0
        (tasks.BinaryClassifier([False, True]), True, True),
        (tasks.BinaryClassifier(["no", "yes"]), "yes", "yes"),
        (tasks.MulticlassClassifier(["a", "b", "c"]), "c", "c"),
        (tasks.Regressor(None, 1), 151, 151.0),
        (
            tasks.Regressor(["Weight", "Waist"], 2),
            {"Waist": 36, "Weight": 191.5},
            {"Weight": 191.5, "Waist": 36.0},
        ),
    ],
)
def test_a_true_value_of_the_task_type_is_accepted(task, value, stored):
    parsed = task.parse_truth(value, "truth")
    assert parsed == stored and type(parsed) is type(stored)


@pytest.mark.parametrize(
    ("task", "value", "message"),
    [
        (tasks.BinaryClassifier([0, 1]), "1", 'truth must be one of [0, 1], got "1"'),
        (tasks.BinaryClassifier([0, 1]), True, "truth must be one of [0, 1], got true"),
        (tasks.BinaryClassifier([0, 1]), 2, "truth must be one of [0, 1], got 2"),
        (tasks.BinaryClassifier([False, True]), 1, "truth must be one of [false, true], got 1"),
        (
            tasks.BinaryClassifier(["no", "yes"]),
            None,
            'truth must be one of ["no", "yes"], got null',
        ),
        (tasks.MulticlassClassifier(["a", "b", "c"]), "d", 'truth must be one of ["a", "b", "c"]'),
        (tasks.Regressor(None, 1), "151", "truth must be a number, got a string"),
        (tasks.Regressor(None, 1), float("nan"), "truth must be a finite number"),
        (
            tasks.Regressor(["Weight", "Waist"], 2),
            [191, 36],
            "truth must be an object with a number",
        ),
        (tasks.Regressor(["Weight", "Waist"], 2), {"Weight": 191}, "truth.Waist is required"),
        (
            tasks.Regressor(["Weight", "Waist"], 2),
            {"Weight": 1, "Waist": True},
            "truth.Waist must be a number",
        ),
    ],
)
def test_a_true_value_of_another_type_is_refused_naming_the_field(task, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        task.parse_truth(value, "truth")


def test_a_wrong_true_value_is_a_422_and_writes_nothing(client):
    client.post("/predict", json={"id": 1, "observation": EXAMPLE})
    response = client.post("/update", json={"id": 1, "true_class": "1"})
    assert (response.status_code, response.json) == (
        422,
        {"error": 'true_class must be one of [0, 1], got "1"'},
    )
    assert service.Prediction.get().true_value is None
