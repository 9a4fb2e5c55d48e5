"""A brief's contract (api.toml), through gunicorn with micro-batching on.

Three contracts that differ from the tutorial's, and from each other, in every key:

* stop-and-search: a flat body, a string id, a decision at 0.1 (examples/stop_and_search);
* athletes: a composite key (a string, and a model column), two regression targets echoed
  back by the update;
* wines: the features nested under another field, an integer id, a multiclass label.

Each is served by gunicorn from a folder holding the model and its api.toml, on SQLite and
PostgreSQL; 16 clients at once, so that requests are scored together. The answers are
compared with the pipeline's own, computed here. The start-up checks of api.toml run
in-process, and so do the answers that echo the request (the id, a composite id's parts, a
feature: nested in a /predict-batch result) and the ids of every shape: 42 and "42" one id,
"042" another, id_type narrowing them, anything else a 422 that names the field.
"""

import inspect
import json
import math
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import joblib
import numpy as np
import pandas as pd
import pytest
import requests
from conftest import EXAMPLE, ROOT, same_probability, service
from sklearn.datasets import load_linnerud, load_wine
from test_openapi import check_against_spec

from model_service import artifacts

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
    model = artifacts.load_model(folder)
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
        assert result == {"id": contract.read_id(body)[1], "status": 200, "answer": answer}


def assert_id_refusals(url, contract, body):
    """A missing part of the key, or a key of the wrong type: 422 naming the field."""
    for name in contract.id_fields:
        status, error = post(url, {k: v for k, v in body.items() if k != name})
        assert (status, error["error"].split(" ")[0]) == (422, name), error
        wrong = {"string": 7, "integer": "7"}.get(contract.id_kinds[name], True)
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
    shown = {"weight": 177.19539864686385, "waist": 35.23731315580857}  # docs/your-brief.md
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
        "id_types": {"id": "integer or string"},
        "observation": "observation",
        "answer": {"proba": "prediction.probability"},
        "invalid": "reject",
    }
    assert (contract["update"]["path"], contract["update"]["true"]) == ("/update", "true_class")
    assert client.post("/predict/", json={"id": True, "observation": {}}).json == {
        "error": "id must be an integer or a non-empty string, got a boolean"
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
            "[predict]\nid_type = 'integer or string'\n",
            'api.toml [predict] id_type must be "integer" or "string"',
        ),
        (
            "[predict]\nanswer = { id = 'request' }\n",
            "api.toml [predict] answer: id = 'request' is not something this regression model",
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
    assert artifacts.load_model(folder).task.threshold == 0.1  # api.toml's
    assert joblib.load(folder / "pipeline.pickle").classes_.tolist() == [False, True]


def test_the_docs_show_the_contracts_served_here():
    page = (ROOT / "docs" / "your-brief.md").read_text()
    assert ATHLETES_TOML.strip() in page
    assert (EXAMPLES / "stop_and_search" / "api.toml").read_text().strip() in page


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


# --- Answers that echo the request, ids of any shape --------------------------------------

WINE = {c: float(v) for c, v in load_wine(as_frame=True).data.iloc[0].items()}


@dataclass
class Echo:
    """A brief whose answer echoes request fields: what it answers of one body."""

    example: str
    toml: str
    body: dict
    echoed: dict  # the answer's keys that quote the request, and their values
    sent_id: object  # the id a /predict-batch result gives this body
    column: str  # a feature to change (another observation, same id) or spoil (a 422)


ECHOES = {
    # The answer's keys are those of a /predict-batch result, and an "error".
    "nested, keys of a batch result": Echo(
        "wine",
        """
        [predict.answer]
        id = "request.id"
        status = "prediction.label"
        error = "request.alcohol"  # a feature, from the observation object
        answer = "request.note"  # a field the model ignores
        """,
        {"id": "case-00042", "note": "not a feature", "observation": WINE},
        {"id": "case-00042", "error": WINE["alcohol"], "answer": "not a feature"},
        "case-00042",
        "malic_acid",
    ),
    "flat, each part of a composite id": Echo(
        "linnerud",
        """
        [predict]
        id = ["athlete", "day"]
        observation = ""
        answer = { athlete = "request.athlete", day = "request.day", Chins = "request.Chins", weight = "prediction.Weight" }
        """,  # noqa: E501 (TOML writes an inline table on one line)
        {"athlete": "a-1", "day": "3", "Chins": 5, "Situps": 162, "Jumps": 60},
        {"athlete": "a-1", "day": "3", "Chins": 5},
        {"athlete": "a-1", "day": "3"},
        "Situps",
    ),
    "the id under the brief's name": Echo(
        "titanic",
        """
        [predict]
        id = "observation_id"
        answer = { observation_id = "request.observation_id", outcome = "prediction.decision" }
        """,
        {"observation_id": 42, "observation": EXAMPLE},
        {"observation_id": 42},
        42,
        "Fare",
    ),
}


def app_for(tmp_path, database_url, example, toml):
    folder = folder_with(tmp_path, example, inspect.cleandoc(toml))
    settings = {"MODEL_DIR": str(folder), "DATABASE_URL": database_url, "ADMIN_TOKEN": TOKEN}
    return service.create_app(settings)


def with_feature(body, contract, column, value):
    """The body with one feature replaced, where the contract keeps the features."""
    if not contract.observation_field:
        return {**body, column: value}
    observation = {**body[contract.observation_field], column: value}
    return {**body, contract.observation_field: observation}


@pytest.mark.parametrize("name", list(ECHOES))
def test_an_answer_echoes_any_request_field_and_a_batch_nests_it(name, tmp_path, database_url):
    echo = ECHOES[name]
    app = app_for(tmp_path, database_url, echo.example, echo.toml)
    model, client = app.config["MODEL"], app.test_client()
    contract = model.contract
    answer = client.post(contract.predict_path, json=echo.body)
    assert answer.status_code == 200, answer.json
    assert answer.json.keys() == contract.predict_sources.keys()
    assert {key: answer.json[key] for key in echo.echoed} == echo.echoed

    # The same id with another observation: the 409 quotes its own request, as a 200 does,
    # and its "error" is the error (the brief's answer key "error" is the batch's to carry).
    value = contract.observation_of(echo.body)[echo.column]
    other = with_feature(echo.body, contract, echo.column, value + 1)
    conflict = client.post(contract.predict_path, json=other)
    assert conflict.status_code == 409
    assert conflict.json["error"].startswith("Observation ID ")
    assert all(conflict.json[k] == v for k, v in echo.echoed.items() if k != "error")

    # A batch result nests the answer: none of its keys meets the result's own.
    spoiled = with_feature(echo.body, contract, echo.column, "a word")
    batch = client.post(contract.batch_path, json={"observations": [echo.body, other, spoiled]})
    check_against_spec(batch, "/predict-batch", "POST", model)
    ok, clash, invalid = batch.json["results"]
    assert ok == {"id": echo.sent_id, "status": 200, "answer": answer.json}
    conflict_answer = {k: v for k, v in conflict.json.items() if k != "error"}
    if "error" in echo.echoed:
        conflict_answer["error"] = echo.echoed["error"]
    assert clash == {
        "id": echo.sent_id,
        "status": 409,
        "error": conflict.json["error"],
        "answer": {k: conflict_answer[k] for k in contract.predict_sources},
    }
    assert invalid.keys() == {"id", "status", "error"}
    assert (invalid["id"], invalid["status"]) == (echo.sent_id, 422)
    assert invalid["error"].startswith(contract.field_name(echo.column)), invalid


BRIEF_ID = """
[predict]
id = "observation_id"
"""
ANOTHER_PASSENGER = dict(EXAMPLE, Fare=80.0)


@pytest.fixture
def brief_client(tmp_path, database_url):
    """The tutorial's model under a brief's id field, observation_id, of no declared type."""
    return app_for(tmp_path, database_url, "titanic", BRIEF_ID).test_client()


def predict_as(client, observation_id, observation=EXAMPLE):
    return client.post(
        "/predict", json={"observation_id": observation_id, "observation": observation}
    )


def listed_by(client):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = client.get("/list-db-contents?limit=1000", headers=headers)
    assert response.status_code == 200
    return {json.dumps(row["observation_id"]): row for row in response.json["predictions"]}


@pytest.mark.parametrize(("first", "again"), [(42, "42"), ("42", 42), ("-7", -7.0), (0, "0")])
def test_an_integer_and_its_decimal_text_are_one_id(brief_client, first, again):
    client, number = brief_client, int(first)
    stored = predict_as(client, first)
    assert stored.status_code == 200
    # A retry, by /predict and in a batch (which gives the id back as it was sent).
    assert predict_as(client, again).json == stored.json
    item = {"observation_id": again, "observation": EXAMPLE}
    batch = client.post("/predict-batch", json={"observations": [item]})
    assert batch.json["results"] == [{"id": again, "status": 200, "answer": stored.json}]
    conflict = predict_as(client, again, ANOTHER_PASSENGER)
    assert conflict.status_code == 409
    assert conflict.json["error"].startswith(f"Observation ID {number} already exists")
    update = client.post("/update", json={"observation_id": again, "true_class": 1})
    assert (update.status_code, update.json["observation_id"]) == (200, number)
    assert listed_by(client).keys() == {str(number)}
    [row] = service.Prediction.select()
    assert (row.observation_key, row.observation_id) == (str(number), number)


def test_any_other_string_is_an_id_of_its_own(brief_client):
    client = brief_client
    assert predict_as(client, 42).status_code == 200
    texts = ["042", "+42", " 42", "42.0", "4e1", "-0", "E12", "case-00042", str(2**63)]
    for text in texts:  # another passenger under each: no conflict with 42
        answer = predict_as(client, text, ANOTHER_PASSENGER)
        assert answer.status_code == 200, (text, answer.json)
    assert predict_as(client, "042", EXAMPLE).status_code == 409  # "042" is stored
    update = client.post("/update", json={"observation_id": "042", "true_class": 0})
    assert (update.status_code, update.json["observation_id"]) == (200, "042")
    rows = listed_by(client)
    assert rows.keys() == {"42", *(json.dumps(text) for text in texts)}
    assert rows['"042"']["true_class"] == 0 and rows["42"]["true_class"] is None
    keys = {row.observation_key: row.observation_id for row in service.Prediction.select()}
    assert keys == {"42": 42, **{json.dumps(text): None for text in texts}}


@pytest.mark.parametrize(
    ("id_type", "accepted", "refused", "message"),
    [
        ("string", "42", 42, "observation_id must be a string, got an integer"),
        ("integer", 42, "42", "observation_id must be an integer, got a string"),
    ],
)
def test_id_type_narrows_the_id(tmp_path, database_url, id_type, accepted, refused, message):
    toml = f'{BRIEF_ID}id_type = "{id_type}"\n'
    client = app_for(tmp_path, database_url, "titanic", toml).test_client()
    assert predict_as(client, accepted).status_code == 200
    for route, body in [("/predict", {"observation": EXAMPLE}), ("/update", {"true_class": 1})]:
        refusal = client.post(route, json={"observation_id": refused, **body})
        assert (refusal.status_code, refusal.json) == (422, {"error": message})
    # A string id keeps the key of the last release: its JSON text, '"42"' (not 42's '42').
    [row] = service.Prediction.select()
    assert row.observation_key == json.dumps(accepted)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "must be an integer or a non-empty string, got a boolean"),
        (None, "must be an integer or a non-empty string, got null"),
        ([42], "must be an integer or a non-empty string, got an array"),
        ({"n": 42}, "must be an integer or a non-empty string, got an object"),
        (1.5, "must be an integer or a non-empty string, got a fraction"),
        (math.nan, "must be an integer or a non-empty string, got a fraction"),
        (2**63, "must be between -9223372036854775808 and 9223372036854775807"),
        ("", "must not be empty"),
        ("x" * 201, "must be at most 200 characters long"),
    ],
)
def test_an_id_of_another_type_is_422_naming_the_field(brief_client, value, message):
    for route, body in [("/predict", {"observation": EXAMPLE}), ("/update", {"true_class": 1})]:
        refusal = brief_client.post(route, data=json.dumps({"observation_id": value, **body}))
        assert (refusal.status_code, refusal.json) == (422, {"error": f"observation_id {message}"})
    missing = brief_client.post("/predict", json={"observation": EXAMPLE}).json["error"]
    assert missing.startswith("observation_id is required: an integer or a string that ")
    assert service.Prediction.select().count() == 0


def test_each_part_of_a_composite_id_follows_the_same_rule(tmp_path, database_url):
    toml = '[predict]\nid = ["athlete", "day"]\nobservation = ""\n'
    client = app_for(tmp_path, database_url, "linnerud", toml).test_client()
    body = {"athlete": "a-1", "day": 3, "Chins": 5, "Situps": 162, "Jumps": 60}
    first = client.post("/predict", json=body)
    assert first.status_code == 200
    assert client.post("/predict", json=dict(body, day="3")).json == first.json  # a retry
    assert client.post("/predict", json=dict(body, day="03")).status_code == 200  # a new id
    assert client.post("/predict", json=dict(body, athlete=7)).status_code == 200  # a new id
    refused = client.post("/predict", json=dict(body, day=False))
    assert refused.json == {"error": "day must be an integer or a non-empty string, got a boolean"}
    truth = {"Weight": 191, "Waist": 36}
    update = client.post("/update", json={"athlete": "a-1", "day": "3", "true_value": truth})
    assert update.status_code == 200, update.json
    assert update.json["observation_id"] == {"athlete": "a-1", "day": 3}
    keys = [
        row.observation_key for row in service.Prediction.select().order_by(service.Prediction.id)
    ]
    assert keys == ['["a-1", 3]', '["a-1", "03"]', "[7, 3]"]
