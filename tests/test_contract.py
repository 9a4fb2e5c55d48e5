"""A brief's contract (api.toml), through gunicorn with micro-batching on.

Three contracts that differ from the tutorial's, and from each other, in every key:

* stop-and-search: a flat body, a string id, a decision at 0.1 (examples/stop_and_search);
* athletes: a composite key (a string, and a model column), two regression targets echoed
  back by the update;
* wines: the features nested under another field, an integer id, a multiclass label.

Each is served by gunicorn from a folder holding the model and its api.toml, on SQLite and
PostgreSQL; 16 clients at once, so that requests are scored together. The answers are
compared with the pipeline's own, computed here. The start-up checks of api.toml run
in-process.
"""

import json
import math
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import ROOT, same_probability, service
from sklearn.datasets import load_linnerud, load_wine

EXAMPLES = ROOT / "examples"
TOKEN = "contract-admin-token"

ATHLETES_TOML = """
[predict]
path = "/forecast_measures/"
id = ["athlete", "Jumps"]   # a string, and a column of the model (an integer)
id_type = "string"
observation = ""
answer = { weight = "prediction.Weight", waist = "prediction.Waist" }

[update]
path = "/measured"
true = { Weight = "weight", Waist = "waist" }

[update.answer]  # a table of its own, for an answer of many keys
athlete = "request.athlete"
Jumps = "request.Jumps"
weight = "request.weight"
predicted_weight = "prediction.Weight"
"""

WINES_TOML = """
[predict]
path = "/classify"
id = "sample"
observation = "wine"
answer = { cultivar = "prediction.label", confidence = "prediction.probabilities" }

[update]
path = "/tasted/"
true = "cultivar"

[update.answer]
sample = "request.sample"
cultivar = "request.cultivar"
predicted = "prediction.label"

[batch]
path = "/classify-many"
"""


def folder_with(tmp_path, example, toml):
    folder = tmp_path / example
    shutil.copytree(EXAMPLES / example, folder)
    (folder / "api.toml").write_text(toml)
    return folder


def stop_and_search_bodies(count=48):
    """The first rows of the example's traffic, as the police would send them."""
    traffic = pd.read_csv(EXAMPLES / "stop_and_search" / "traffic.csv").head(count)
    bodies = [
        {key: None if pd.isna(value) else value for key, value in row.items() if key != "outcome"}
        for row in traffic.astype(object).to_dict("records")
    ]
    truths = [{"outcome": bool(value)} for value in traffic["outcome"]]
    return bodies, truths


def athletes_bodies():
    data = load_linnerud(as_frame=True)
    bodies = [
        {"athlete": f"athlete-{k}", **{c: int(v) for c, v in row.items()}}
        for k, row in enumerate(data.data.to_dict("records"))
    ]
    truths = [
        {"weight": float(w), "waist": float(s)}
        for w, s in zip(data.target["Weight"], data.target["Waist"], strict=True)
    ]
    return bodies, truths


def wines_bodies():
    data = load_wine(as_frame=True)
    bodies = [
        {"sample": k, "wine": {c: float(v) for c, v in row.items()}}
        for k, row in enumerate(data.data.head(48).to_dict("records"))
    ]
    truths = [{"cultivar": str(data.target_names[k])} for k in data.target.head(48)]
    return bodies, truths


BRIEFS = ["stop-and-search", "athletes", "wines"]


@pytest.fixture(scope="module")
def brief(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("briefs")
    if request.param == "stop-and-search":
        return EXAMPLES / "stop_and_search", *stop_and_search_bodies()
    if request.param == "athletes":
        return folder_with(tmp_path, "linnerud", ATHLETES_TOML), *athletes_bodies()
    return folder_with(tmp_path, "wine", WINES_TOML), *wines_bodies()


def expected_answers(model, bodies):
    """What the brief's answer holds for each body, from the pipeline itself."""
    rows = [
        [
            math.nan
            if model.contract.observation_of(b).get(c) is None
            else model.contract.observation_of(b)[c]
            for c in model.columns
        ]
        for b in bodies
    ]
    frame = pd.DataFrame(rows, columns=model.columns).astype(model.dtypes)
    pipeline = model.pipeline
    if model.task.name == "binary":
        probabilities = pipeline.predict_proba(frame)[:, model.task.positive_index]
        return [{"outcome": p >= model.task.threshold} for p in probabilities], probabilities
    if model.task.name == "multiclass":
        matrix = pipeline.predict_proba(frame)
        classes = pipeline.classes_.tolist()
        return [
            {
                "cultivar": classes[int(np.argmax(row))],
                "confidence": dict(zip(classes, row, strict=True)),
            }
            for row in matrix
        ], None
    numbers = pipeline.predict(frame)
    return [{"weight": w, "waist": s} for w, s in numbers.tolist()], None


def same_answer(actual, expected):
    """Equal answers, numbers up to the last digits (another process, other batches)."""
    if isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            same_answer(actual[k], v) for k, v in expected.items()
        )
    if isinstance(expected, float) and not isinstance(expected, bool):
        return isinstance(actual, float) and same_probability(actual, expected)
    return actual == expected and type(actual) is type(expected)


@pytest.mark.slow
@pytest.mark.parametrize("brief", BRIEFS, indirect=True)
def test_a_brief_is_served_as_its_contract_says(brief, start_server, database_url):
    folder, bodies, truths = brief
    model = service.load_model(folder)
    contract = model.contract
    env = {"MODEL_DIR": str(folder), "ADMIN_TOKEN": TOKEN}
    server = start_server(database_url, workers=1, env=env)
    predict_url = server.url + contract.predict_path

    # Both spellings of the route, with and without the final slash, from 16 clients.
    urls = [predict_url + ("/" if k % 2 else "") for k in range(len(bodies))]
    with ThreadPoolExecutor(16) as clients:
        answers = list(clients.map(lambda ub: post(*ub), zip(urls, bodies, strict=True)))
    expected, probabilities = expected_answers(model, bodies)
    for (status, answer), wanted in zip(answers, expected, strict=True):
        assert status == 200, answer
        if probabilities is None:
            assert same_answer(answer, wanted), (answer, wanted)
    if probabilities is not None:  # a decision: exactly the probability's, at the threshold
        stored = {row["observation_id"]: row for row in listed(server)}
        for body, (_, answer) in zip(bodies, answers, strict=True):
            row = stored[body["observation_id"]]
            assert answer == {"outcome": row["proba"] >= contract.model_settings["threshold"]}
            assert row["threshold"] == 0.1 and row["positive_class"] is True

    # A retry is answered identically; the same key with another observation is a 409.
    assert post(predict_url, bodies[0]) == answers[0]
    other = dict(bodies[1], **{k: bodies[0][k] for k in contract.id_fields})
    if other != bodies[0]:
        assert post(predict_url, other)[0] == 409

    # The update echoes what the brief says, and the true value is stored in its type.
    update_url = server.url + contract.update_path + "/"
    body = {**{k: bodies[0][k] for k in contract.id_fields}, **truths[0]}
    status, echo = post(update_url, body)
    assert status == 200, echo
    for key, source in contract.update_sources.items():
        where, _, name = source.partition(".")
        if where == "request":
            assert echo[key] == body[name] and type(echo[key]) is type(body[name])
    assert_update_refusals(update_url, contract, bodies[0], truths[0])
    assert_batch(server, contract, bodies[:3], answers[:3])
    assert_id_refusals(predict_url, contract, bodies[0])


def assert_update_refusals(url, contract, body, truth):
    """A true value of the wrong type is a 422 naming the brief's field."""
    ids = {k: body[k] for k in contract.id_fields}
    field, value = next(iter(truth.items()))
    wrong = 7 if isinstance(value, str) else str(value)
    status, error = post(url, {**ids, **truth, field: wrong})
    assert status == 422 and error["error"].startswith(field), error


def assert_batch(server, contract, bodies, answers):
    """The batch route takes items of the /predict body's shape: its stored answers back."""
    status, batch = post(server.url + contract.batch_path, {"observations": bodies})
    assert status == 200, batch
    for result, (_, answer), body in zip(batch["results"], answers, bodies, strict=True):
        assert result == {**{k: body[k] for k in contract.id_fields}, "status": 200, **answer}


def assert_id_refusals(url, contract, body):
    """A missing part of the key, or a key of the wrong type: 422 naming the field."""
    for name in contract.id_fields:
        status, error = post(url, {k: v for k, v in body.items() if k != name})
        assert (status, error["error"].split(" ")[0]) == (422, name), error
        wrong = 7 if contract.id_kinds[name] == "string" else "7"
        status, error = post(url, {**body, name: wrong})
        assert status == 422 and error["error"].startswith(f"{name} must be"), error


def post(url, body):
    response = requests.post(url, json=body, timeout=30)
    return response.status_code, response.json()


def listed(server):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = requests.get(
        f"{server.url}/list-db-contents?limit=1000", headers=headers, timeout=10
    )
    assert response.status_code == 200
    return response.json()["predictions"]


# --- In-process: what one app needs to show -------------------------------------------


def test_a_composite_key_is_one_identity(tmp_path, database_url):
    folder = folder_with(tmp_path, "linnerud", ATHLETES_TOML)
    client = service.create_app(
        {"MODEL_DIR": str(folder), "DATABASE_URL": database_url}
    ).test_client()
    body = {"athlete": "a-1", "Chins": 5, "Situps": 162, "Jumps": 60}
    first = client.post("/forecast_measures", json=body)
    assert first.status_code == 200
    shown = {"weight": 177.19539864686385, "waist": 35.23731315580857}  # README, section 15
    assert same_answer(first.json, shown)
    assert client.post("/forecast_measures/", json=dict(body, Jumps=60.0)).json == first.json
    # Another athlete with the same Jumps, and the same athlete with other Jumps: new keys.
    assert client.post("/forecast_measures", json=dict(body, athlete="a-2")).status_code == 200
    assert client.post("/forecast_measures", json=dict(body, Jumps=61)).status_code == 200
    assert client.post("/forecast_measures", json=dict(body, Situps=1)).status_code == 409
    rows = service.Prediction.select().order_by(service.Prediction.id)
    assert [json.loads(row.observation_key) for row in rows] == [
        ["a-1", 60],
        ["a-2", 60],
        ["a-1", 61],
    ]
    assert all(row.observation_id is None for row in rows)
    update = client.post(
        "/measured", json={"athlete": "a-1", "Jumps": 60, "weight": 191, "waist": 36}
    )
    assert update.json == {
        "athlete": "a-1",
        "Jumps": 60,
        "weight": 191,
        "predicted_weight": first.json["weight"],
    }
    stored = service.Prediction.get_by_id(rows[0].id)
    assert json.loads(stored.true_value) == {"Weight": 191.0, "Waist": 36.0}


def test_the_tutorial_contract_holds_without_the_file(client):
    contract = client.get("/health").json["contract"]
    assert contract["predict"] == {
        "path": "/predict",
        "id": ["id"],
        "id_types": {"id": "integer"},
        "observation": "observation",
        "answer": {"proba": "prediction.probability"},
    }
    assert (contract["update"]["path"], contract["update"]["true"]) == ("/update", "true_class")
    assert client.post("/predict/", json={"id": "1", "observation": {}}).json == {
        "error": "id must be an integer, got a string"
    }


def test_a_string_id_has_a_length_limit(database_url):
    folder = EXAMPLES / "stop_and_search"
    client = service.create_app(
        {"MODEL_DIR": str(folder), "DATABASE_URL": database_url}
    ).test_client()
    body = stop_and_search_bodies()[0][0]
    assert (
        client.post("/should_search", json=dict(body, observation_id="x" * 200)).status_code == 200
    )
    refused = client.post("/should_search", json=dict(body, observation_id="x" * 201))
    assert refused.json == {"error": "observation_id must be at most 200 characters long"}
    assert client.post("/should_search", json=dict(body, observation_id="")).status_code == 422


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[predict]\npathh = '/x'\n", "api.toml [predict] has an unknown key 'pathh'"),
        ("[routes]\n", "api.toml has an unknown table [routes]"),
        (
            "[predict]\npath = '/health'\n",
            "api.toml [predict] path /health is a route the service already serves",
        ),
        (
            "[predict]\npath = '/x'\n[update]\npath = '/x/'\n",
            "api.toml [update] path /x is also the [predict] path",
        ),
        (
            "[predict]\npath = 'x'\n",
            "api.toml [predict] path must be a path such as /should_search/",
        ),
        (
            "[predict]\nanswer = { p = 'prediction.probability' }\n",
            "api.toml [predict] answer: p = 'prediction.probability' is not something this "
            "regression model answers",
        ),
        (
            "[predict]\nid = 'id'\nobservation = 'id'\n",
            "api.toml [predict] observation 'id' is also an id field",
        ),
        (
            "[predict]\nid_type = 'uuid'\n",
            'api.toml [predict] id_type must be "integer" or "string"',
        ),
        (
            "[update]\ntrue = { Weight = 'w' }\n",
            "api.toml [update] true must name a field for each target (Weight, Waist)",
        ),
        ("[predict\n", "Cannot read"),
        (
            "[predict]\nanswer = { status = 'prediction' }\n",
            "api.toml [predict] answer: status is also a key of every /predict-batch result",
        ),
    ],
)
def test_a_contract_that_cannot_be_served_stops_the_start_naming_the_key(tmp_path, toml, message):
    folder = folder_with(tmp_path, "linnerud", toml)
    settings = {"MODEL_DIR": str(folder), "DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}
    with pytest.raises(service.StartupError, match=re_escape(message)):
        service.create_app(settings)


def re_escape(text):
    return re.escape(text)


def test_the_settings_win_over_the_brief(tmp_path, database_url):
    """THRESHOLD on Railway changes the decision without a commit of api.toml."""
    folder = EXAMPLES / "stop_and_search"
    settings = {"MODEL_DIR": str(folder), "DATABASE_URL": database_url, "THRESHOLD": 0.9}
    task = service.create_app(settings).config["MODEL"].task
    assert (task.threshold, task.positive_class) == (0.9, True)
    assert service.load_model(folder).task.threshold == 0.1  # api.toml's
    assert joblib.load(folder / "pipeline.pickle").classes_.tolist() == [False, True]


def test_the_readme_shows_the_contracts_served_here():
    readme = (ROOT / "README.md").read_text()
    assert ATHLETES_TOML.strip() in readme
    assert (EXAMPLES / "stop_and_search" / "api.toml").read_text().strip() in readme


def test_an_update_of_a_row_another_task_answered_quotes_a_null_prediction(tmp_path):
    """A row stored by a regressor, updated once a classifier of the brief is served."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    folder = folder_with(tmp_path, "wine", WINES_TOML)
    regressor = {"MODEL_DIR": str(EXAMPLES / "diabetes"), "DATABASE_URL": url}
    observation = {"age": 59, "sex": 2, "bmi": 32.1, "bp": 101.0, "s1": 157.0, "s2": 93.2,
                   "s3": 38.0, "s4": 4.0, "s5": 4.8598, "s6": 87.0}  # fmt: skip
    client = service.create_app(regressor).test_client()
    assert client.post("/predict", json={"id": 5, "observation": observation}).status_code == 200
    client = service.create_app({"MODEL_DIR": str(folder), "DATABASE_URL": url}).test_client()
    answer = client.post("/tasted", json={"sample": 5, "cultivar": "class_1"})
    assert (answer.status_code, answer.json["predicted"]) == (200, None)
