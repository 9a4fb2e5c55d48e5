"""POST /predict-batch, in-process, on SQLite and (with TEST_DATABASE_URL) PostgreSQL.

The oracle for every item is /predict itself: the same items, sent one at a time in the
same order to a fresh service, must get the same statuses, probabilities and errors. Under
a brief's contract (the stop-and-search example: a flat body, a string id, a decision), the
items are that contract's bodies and the results carry their id and, nested, its answer.
"""

import dataclasses
import json
import math

import pytest
from conftest import EXAMPLE, ROOT, free_port, service
from reliability_helpers import pipeline_probabilities, random_observations, stored_rows
from test_openapi import check_against_spec
from test_smoke_check import STOP_AND_SEARCH, TASK_EXAMPLES, brief_dir

from model_service import database, predict_batch, store

OTHER = dict(EXAMPLE, Pclass=3, Sex="male", Fare=7.25)  # another passenger


def post_batch(client, items):
    return client.post("/predict-batch", data=json.dumps({"observations": items}))


def one_at_a_time(tmp_path, items, **settings):
    """What /predict answers for each item, sent in order to a fresh service (the oracle)."""
    return one_at_a_time_at(tmp_path, "/predict", items, **settings)


def as_result(status, body):
    """A /predict response in the shape of a batch result, without its id: {"status",
    "answer"} for a 200, {"status", "error", "answer"} for a 409, {"status", "error"}."""
    if status == 200:
        return {"status": 200, "answer": body}
    error = {"status": status, "error": body["error"]}
    answer = {key: value for key, value in body.items() if key != "error"}
    return {**error, "answer": answer} if status == 409 else error


def relative_difference(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def test_each_item_gets_what_predict_would_answer_in_order(client, database_url, tmp_path):
    first = {"id": 1, "observation": EXAMPLE}
    assert client.post("/predict", data=json.dumps(first)).status_code == 200
    items = [
        {"id": 10, "observation": OTHER},  # new
        {"id": 1, "observation": dict(EXAMPLE, Age=27, Name="Jane")},  # retry: same values
        {"id": 1, "observation": OTHER},  # conflict with the stored row
        {"id": True, "observation": EXAMPLE},  # invalid id
        {"id": 11, "observation": dict(EXAMPLE, Pclass="first")},  # invalid observation
        {"observation": EXAMPLE},  # no id
        {"id": 12, "observation": EXAMPLE},  # new
        {"id": 10, "observation": OTHER},  # repeated in this batch: a retry of the first
        {"id": 12, "observation": OTHER},  # repeated in this batch: a conflict
        {"id": 13},  # no observation
    ]
    response = post_batch(client, items)
    assert response.status_code == 200, response.json
    check_against_spec(response, "/predict-batch", "POST")
    results = response.json["results"]

    expected = one_at_a_time(tmp_path, [first, *items])[1:]
    assert [r["status"] for r in results] == [200, 200, 409, 422, 422, 422, 200, 200, 409, 422]
    assert [r["id"] for r in results] == [10, 1, 1, None, 11, None, 12, 10, 12, 13]
    for result, oracle in zip(results, expected, strict=True):
        del result["id"]
        assert same_answer(result, oracle), (result, oracle)
    assert results[3]["error"] == "id must be an integer or a non-empty string, got a boolean"

    # Exactly one row per new id; the retry and the conflicts wrote nothing.
    rows = stored_rows(database_url)
    assert sorted(rows) == [1, 10, 12]
    probability = results[0]["answer"]["proba"]
    assert rows[10] == (probability, json.dumps({"id": 10, "observation": OTHER}))
    assert results[7]["answer"]["proba"] == probability
    assert results[1]["answer"]["proba"] == rows[1][0]


def same_answer(a, b):
    """Equal, numbers within a relative 1e-12 (scored in another batch: other BLAS sums)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_answer(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return relative_difference(a, b) <= 1e-12
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("name", list(TASK_EXAMPLES))
def test_every_task_gets_what_predict_would_answer(name, tmp_path):
    """The example models: each item carries its task's answer, 409 included."""
    settings = {"MODEL_DIR": str(ROOT / "examples" / name)}
    app = service.create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", **settings})
    observation = TASK_EXAMPLES[name]
    first = next(iter(observation))
    other = dict(observation, **{first: observation[first] + 1})
    items = [
        {"id": 1, "observation": observation},
        {"id": 2, "observation": other},
        {"id": 1, "observation": observation},  # a retry
        {"id": 2, "observation": observation},  # a conflict
        {"id": 3, "observation": {}},  # invalid
    ]
    response = post_batch(app.test_client(), items)
    check_against_spec(response, "/predict-batch", "POST", app.config["MODEL"])
    results = response.json["results"]

    expected = one_at_a_time(tmp_path, items, **settings)
    assert [r["status"] for r in results] == [200, 200, 200, 409, 422]
    for result, item, oracle in zip(results, items, expected, strict=True):
        assert result.pop("id") == item["id"]
        assert same_answer(result, oracle), (result, oracle)
    answer_keys = {"wine": {"label", "probabilities"}}.get(name, {"prediction"})
    assert set(results[0]) == {"status", "answer"} and set(results[0]["answer"]) == answer_keys
    assert results[2] == results[0]  # the stored answer, bit for bit


def test_a_briefs_items_are_its_bodies_and_its_results_carry_its_id_and_answer(
    database_url, tmp_path
):
    """The stop-and-search brief: each item a flat /should_search body under a string id;
    each result {"id": ..., "status": ..., "answer": {"outcome": <a decision>}}."""
    settings = {"MODEL_DIR": str(brief_dir("stop_and_search", tmp_path))}
    app = service.create_app({"DATABASE_URL": database_url, **settings})
    model, client = app.config["MODEL"], app.test_client()
    search = {"observation_id": "2022-005608", **STOP_AND_SEARCH}
    items = [
        search,
        dict(search, observation_id="2022-005609", Latitude=None),  # a missing value
        dict(search, Latitude=51.5),  # the first id, another search: a conflict
        dict(search, observation_id=""),  # an empty id
        dict(search, observation_id="2022-005610", **{"Part of a policing operation": None}),
        {"observation_id": "2022-005611", "observation": STOP_AND_SEARCH},  # nested: invalid
    ]
    response = post_batch(client, items)
    assert response.status_code == 200, response.json
    check_against_spec(response, "/predict-batch", "POST", model)
    results = response.json["results"]

    expected = one_at_a_time_at(tmp_path, "/should_search", items, **settings)
    assert [r["status"] for r in results] == [200, 200, 409, 422, 422, 422]
    assert [r["id"] for r in results] == [
        "2022-005608", "2022-005609", "2022-005608", None, "2022-005610", "2022-005611"
    ]  # fmt: skip
    for result, oracle in zip(results, expected, strict=True):
        del result["id"]
        assert result == oracle, (result, oracle)
    assert results[0]["answer"] == {"outcome": True}  # the brief's example: search
    assert results[2]["error"].startswith('Observation ID "2022-005608" already exists')
    assert results[5]["error"].startswith("Part of a policing operation is required")
    # The batch's rows are what /should_search stores: a later retry of one is answered alike.
    again = client.post("/should_search/", json=items[1])
    assert again.status_code == 200 and again.json == results[1]["answer"]


def one_at_a_time_at(tmp_path, path, items, **settings):
    """What `path` answers for each item, sent in order to a fresh service (the oracle)."""
    app = service.create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'oracle.db'}", **settings})
    client = app.test_client()
    return [
        as_result(response.status_code, response.json)
        for response in (client.post(path, data=json.dumps(item)) for item in items)
    ]


def test_probabilities_equal_one_row_scoring(client, database_url):
    observations = random_observations(100, seed=10)
    items = [{"id": index, "observation": o} for index, o in enumerate(observations)]
    results = post_batch(client, items).json["results"]
    assert {result["status"] for result in results} == {200}
    one_row = [pipeline_probabilities([observation])[0] for observation in observations]
    answers = [r["answer"]["proba"] for r in results]
    worst = max(relative_difference(a, p) for a, p in zip(answers, one_row, strict=True))
    assert worst <= 1e-12
    rows = stored_rows(database_url)
    assert len(rows) == 100
    assert all(rows[r["id"]][0] == r["answer"]["proba"] for r in results)


def test_a_batch_item_is_stored_like_a_predict_body(client):
    items = [{"id": 5, "observation": dict(EXAMPLE, Age=math.nan, Cabin=None)}]
    stored = post_batch(client, items).json["results"][0]["answer"]["proba"]
    # A later /predict of the same observation, written differently, is a retry.
    retry = {"id": 5, "observation": {k: v for k, v in EXAMPLE.items() if k not in ("Age",)}}
    assert client.post("/predict", data=json.dumps(retry)).json == {"proba": stored}
    conflict = client.post("/predict", data=json.dumps({"id": 5, "observation": OTHER}))
    assert conflict.status_code == 409


class CountingPipeline:
    """The real pipeline, counting its predict_proba calls and their rows."""

    def __init__(self, pipeline):
        self.pipeline, self.calls = pipeline, []

    def predict_proba(self, frame):
        self.calls.append(len(frame))
        return self.pipeline.predict_proba(frame)


def test_one_predict_proba_call_and_one_transaction_for_the_valid_items(app, client, monkeypatch):
    model = app.config["MODEL"]
    counting = CountingPipeline(model.pipeline)
    app.config["MODEL"] = dataclasses.replace(model, pipeline=counting)
    transactions = []
    real_in_transaction = store.Store.in_transaction

    def counted(self, work):
        transactions.append(work)
        return real_in_transaction(self, work)

    monkeypatch.setattr(store.Store, "in_transaction", counted)
    items = [{"id": index, "observation": o} for index, o in enumerate(random_observations(50, 4))]
    items[7:7] = [{"id": 1.5}, {"id": 99, "observation": {"Pclass": None}}]
    results = post_batch(client, items).json["results"]
    assert [r["status"] for r in results].count(200) == 50
    assert counting.calls == [50]
    assert len(transactions) == 1
    # And no database at all when no item is valid.
    assert post_batch(client, [{"id": None}]).json["results"][0]["status"] == 422
    assert counting.calls == [50] and len(transactions) == 1


def test_the_batch_uses_the_scoring_and_storing_function_of_predict():
    assert predict_batch.score_and_store is store.score_and_store


# --- The whole request refused ------------------------------------------------------------


@pytest.mark.parametrize(
    "body, status, message",
    [
        ("{not json", 400, "Request body is not valid JSON"),
        ("[1, 2]", 400, "Request body must be a JSON object"),
        ('{"id": 1, "observation": {}}', 400, "Request body must be a JSON object"),
        ('{"observations": {"id": 1}}', 400, "Request body must be a JSON object"),
        ('{"observations": [{"id": 1, "observation": {}}, 3]}', 400, "Request body must be"),
        ("[" * 100_000, 400, "Request body is not valid JSON"),
        ('{"observations": []}', 422, "observations is empty: send at least one"),
    ],
)
def test_a_body_that_cannot_be_read_is_refused_whole(client, database_url, body, status, message):
    response = client.post("/predict-batch", data=body)
    assert response.status_code == status
    assert response.json["error"].startswith(message)
    check_against_spec(response, "/predict-batch", "POST")
    assert stored_rows(database_url) == {}


def test_more_items_than_the_limit_is_422_and_stores_nothing(database_url):
    default = service.create_app({"DATABASE_URL": database_url}).config
    assert default["PREDICT_BATCH_MAX_OBSERVATIONS"] == 1000
    assert default["PREDICT_BATCH_MAX_BYTES"] == 4 * 1024 * 1024
    app = service.create_app({"DATABASE_URL": database_url, "PREDICT_BATCH_MAX_OBSERVATIONS": 3})
    client = app.test_client()
    items = [{"id": index, "observation": EXAMPLE} for index in range(4)]
    response = post_batch(client, items)
    assert response.status_code == 422
    assert response.json == {"error": "observations holds 4 items, more than 3: send fewer at once"}
    check_against_spec(response, "/predict-batch", "POST")
    assert stored_rows(database_url) == {}
    assert post_batch(client, items[:3]).status_code == 200
    assert sorted(stored_rows(database_url)) == [0, 1, 2]


def test_the_batch_has_its_own_byte_limit(database_url):
    app = service.create_app({"DATABASE_URL": database_url, "PREDICT_BATCH_MAX_BYTES": 100_000})
    client = app.test_client()
    observations = random_observations(1000, seed=5)
    items = [{"id": index, "observation": o} for index, o in enumerate(observations)]
    small = json.dumps({"observations": items[:600]})
    assert 64 * 1024 < len(small) <= 100_000  # over /predict's limit, under the batch's
    assert client.post("/predict-batch", data=small).status_code == 200
    padded_items = [dict(item, note="x" * 200) for item in items[600:]]  # extra keys count too
    large = json.dumps({"observations": padded_items})
    assert len(large) > 100_000
    response = client.post("/predict-batch", data=large)
    assert response.status_code == 413
    assert response.json == {"error": "Request body is larger than 100000 bytes"}
    check_against_spec(response, "/predict-batch", "POST")
    assert len(stored_rows(database_url)) == 600
    # /predict keeps MAX_REQUEST_BYTES.
    padded = json.dumps({"id": 1000, "observation": EXAMPLE}) + " " * (64 * 1024)
    assert client.post("/predict", data=padded).status_code == 413


@pytest.mark.parametrize("name", ["PREDICT_BATCH_MAX_BYTES", "PREDICT_BATCH_MAX_OBSERVATIONS"])
def test_the_limits_are_read_from_the_environment(database_url, monkeypatch, name):
    monkeypatch.setenv(name, "7")
    assert service.create_app({"DATABASE_URL": database_url}).config[name] == 7
    wrong_values = [("0", "must be at least 1"), ("many", "must be a number")]
    if name == "PREDICT_BATCH_MAX_OBSERVATIONS":
        wrong_values.append(("10001", "must be at most 10000"))
    for wrong, message in wrong_values:
        monkeypatch.setenv(name, wrong)
        with pytest.raises(service.StartupError, match=message):
            service.create_app({"DATABASE_URL": database_url})


def test_a_database_that_cannot_be_reached_is_503_and_a_retry_stores_all(app, database_url):
    client = app.test_client()
    items = [{"id": index, "observation": o} for index, o in enumerate(random_observations(20, 6))]
    nowhere = database.open_database(f"postgresql://postgres@127.0.0.1:{free_port()}/x", 1)
    reachable = service.database.obj
    service.database.initialize(nowhere)
    try:
        response = post_batch(client, items)
    finally:
        service.database.initialize(reachable)
    assert response.status_code == 503
    assert response.json == {"error": "The database is unavailable; retry in a few seconds"}
    assert response.headers["Retry-After"] == "1"
    check_against_spec(response, "/predict-batch", "POST")
    assert stored_rows(database_url) == {}
    again = post_batch(client, items)
    assert [r["status"] for r in again.json["results"]] == [200] * 20
    assert sorted(stored_rows(database_url)) == list(range(20))
