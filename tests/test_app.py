"""The HTTP contract, route by route, on SQLite and (with TEST_DATABASE_URL) PostgreSQL."""

import json
import math

import pandas as pd
import pytest
from conftest import EXAMPLE, free_port, service

from model_service import database, scoring

PREDICTION_KEYS = {
    "id",
    "observation_id",
    "observation",
    "model_version",
    "prediction",
    "proba",
    "threshold",
    "positive_class",
    "true_class",
    "created_at",
}


def post(client, path, payload):
    """POST a body the way Python and pandas clients write it: NaN as the NaN token."""
    return client.post(path, data=json.dumps(payload), content_type="application/json")


def predict(client, observation_id, observation):
    return post(client, "/predict", {"id": observation_id, "observation": observation})


def stored_rows():
    return list(service.Prediction.select().order_by(service.Prediction.id))


def expected_proba(app, observation):
    """The pipeline's own answer, from a frame built independently of the service's code."""
    model = app.config["MODEL"]
    row = {c: math.nan if observation.get(c) is None else observation[c] for c in model.columns}
    frame = pd.DataFrame([row], columns=model.columns).astype(model.dtypes)
    return float(model.pipeline.predict_proba(frame)[0, 1])


# --- POST /predict ------------------------------------------------------------------


def test_predict_returns_the_pipeline_probability_and_stores_the_request(app, client, example):
    body = json.dumps({"id": 42, "observation": example})
    response = client.post("/predict", data=body, content_type="application/json")

    assert response.status_code == 200
    assert response.json == {"proba": pytest.approx(expected_proba(app, example), abs=1e-12)}
    [row] = stored_rows()
    assert (row.observation_id, row.observation, row.true_class) == (42, body, None)
    assert row.proba == response.json["proba"]  # double precision: not a rounded float4


def test_body_is_json_whatever_the_content_type(client, example):
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        body = json.dumps({"id": 1, "observation": example})
        response = client.post("/predict", data=body, content_type=content_type)
        assert response.status_code == 200, response.json


def test_null_nan_and_absent_are_the_same_missing_value(client, example):
    probabilities = []
    for index, missing in enumerate(["null", "NaN", None]):
        observation = {key: value for key, value in example.items() if key not in ("Cabin", "Age")}
        text = json.dumps({"id": index, "observation": observation})
        if missing is not None:
            text = text[:-2] + f', "Cabin": {missing}, "Age": {missing}}}}}'
        response = client.post("/predict", data=text)
        assert response.status_code == 200, response.json
        probabilities.append(response.json["proba"])
    assert probabilities[0] == probabilities[1] == probabilities[2]


def test_an_unknown_cabin_and_extra_keys_are_fine(client, example):
    observation = dict(example, Cabin="Z99", Name="Mr. Extra", Ticket=12345)
    assert predict(client, 1, observation).status_code == 200


def test_integral_floats_are_integers(client, example):
    plain = predict(client, 1, example).json["proba"]
    as_floats = dict(example, Pclass=2.0, SibSp=0.0, Parch=0.0)
    assert predict(client, 2.0, as_floats).json == {"proba": plain}
    assert [row.observation_id for row in stored_rows()] == [1, 2]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("Pclass", 2.5, "observation.Pclass must be an integer"),
        ("Pclass", None, "observation.Pclass is required"),
        ("Pclass", "2", "observation.Pclass must be an integer, got a string"),
        ("Pclass", True, "observation.Pclass must be an integer, got a boolean"),
        ("Pclass", 2**70, "observation.Pclass must be between"),
        ("Age", "27", "observation.Age must be a number, got a string"),
        ("Age", False, "observation.Age must be a number, got a boolean"),
        ("Age", {"years": 27}, "observation.Age must be a number, got an object"),
        ("Age", [27], "observation.Age must be a number, got an array"),
        ("Age", 10**400, "observation.Age must be a finite number"),
        ("Sex", 1, "observation.Sex must be a string, got an integer"),
        ("Sex", ["female"], "observation.Sex must be a string, got an array"),
    ],
)
def test_each_field_is_checked_against_its_training_dtype(client, example, field, value, message):
    response = predict(client, 1, dict(example, **{field: value}))
    assert response.status_code == 422
    assert message in response.json["error"]
    assert stored_rows() == []


@pytest.mark.parametrize("token", ["Infinity", "-Infinity"])
def test_infinity_is_refused(client, example, token):
    text = json.dumps({"id": 1, "observation": dict(example, Fare=0)}).replace(
        '"Fare": 0', f'"Fare": {token}'
    )
    response = client.post("/predict", data=text)
    assert response.status_code == 422
    assert "observation.Fare must be a finite number" in response.json["error"]


def test_a_missing_integer_column_and_several_problems_are_all_named(client, example):
    observation = dict(example, Age="old")
    del observation["Pclass"]
    error = predict(client, 1, observation).json["error"]
    assert "observation.Pclass is required" in error
    assert "observation.Age must be a number" in error


ONE_OF = "id must be an integer or a non-empty string, "


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"observation": EXAMPLE}, "id is required"),
        ({"id": "", "observation": EXAMPLE}, "id must not be empty"),  # "7" is an id: 7
        ({"id": 7.5, "observation": EXAMPLE}, ONE_OF + "got a fraction"),
        ({"id": True, "observation": EXAMPLE}, ONE_OF + "got a boolean"),
        ({"id": None, "observation": EXAMPLE}, ONE_OF + "got null"),
        ({"id": [7], "observation": EXAMPLE}, ONE_OF + "got an array"),
        ({"id": 2**63, "observation": EXAMPLE}, "id must be between"),
        ({"id": 7}, "observation must be a JSON object"),
        ({"id": 7, "observation": [1, 2]}, "observation must be a JSON object"),
        ({"id": 7, "observation": "Pclass=2"}, "observation must be a JSON object"),
    ],
)
def test_id_and_observation_are_checked(client, payload, message):
    response = post(client, "/predict", payload)
    assert response.status_code == 422
    assert message in response.json["error"]
    assert stored_rows() == []


def test_the_largest_64_bit_ids_are_stored(client, example):
    for observation_id in (2**63 - 1, -(2**63)):
        assert predict(client, observation_id, example).status_code == 200
    assert {row.observation_id for row in stored_rows()} == {2**63 - 1, -(2**63)}


def test_a_retry_gets_the_stored_answer_and_writes_nothing(client, example):
    first = predict(client, 5, example)
    # The same observation written differently: other key order, 2.0 for 2, NaN for null.
    text = '{"observation": {"Embarked": "S", "Cabin": NaN, "Fare": 13, "Parch": 0,'
    text += ' "SibSp": 0, "Age": 27, "Sex": "female", "Pclass": 2.0}, "id": 5}'
    for response in (predict(client, 5, example), client.post("/predict", data=text)):
        assert response.status_code == 200
        assert response.json == first.json
    assert len(stored_rows()) == 1


def test_the_same_id_with_another_observation_is_a_conflict(app, client, example):
    first = predict(client, 5, example)
    other = dict(example, Sex="male", Pclass=3)
    response = predict(client, 5, other)

    assert response.status_code == 409
    assert "Observation ID 5 already exists" in response.json["error"]
    assert response.json["proba"] == pytest.approx(expected_proba(app, other), abs=1e-12)
    [row] = stored_rows()
    assert row.proba == first.json["proba"]
    assert json.loads(row.observation)["observation"] == example


# --- POST /update -------------------------------------------------------------------


def test_update_stores_the_label_and_returns_the_row(client, example):
    proba = predict(client, 3, example).json["proba"]
    response = post(client, "/update", {"id": 3, "true_class": 1})

    assert response.status_code == 200
    row = response.json
    assert set(row) == PREDICTION_KEYS
    assert (row["observation_id"], row["proba"], row["true_class"]) == (3, proba, 1)
    assert json.loads(row["observation"]) == {"id": 3, "observation": example}
    assert row["created_at"].endswith("Z")
    # Which model answered, what it said, and the rule of its decision.
    assert row["model_version"] == client.application.config["MODEL"].version
    decision = proba >= 0.5
    assert row["prediction"] == {"probability": proba, "decision": decision, "label": int(decision)}
    assert (row["threshold"], row["positive_class"]) == (0.5, 1)
    assert stored_rows()[0].true_value == "1"


def test_a_new_label_overwrites_the_old_one(client, example):
    predict(client, 3, example)
    post(client, "/update", {"id": 3, "true_class": 1})
    assert post(client, "/update", {"id": 3, "true_class": 0.0}).json["true_class"] == 0
    assert stored_rows()[0].true_value == "0"


def test_update_of_an_unknown_id_is_404(client):
    response = post(client, "/update", {"id": 7, "true_class": 1})
    assert response.status_code == 404
    assert response.json == {"error": "Observation ID 7 does not exist"}


@pytest.mark.parametrize("label", [2, -1, True, "1", None, 0.5, [1]])
def test_the_label_must_be_one_of_the_classes(client, example, label):
    predict(client, 3, example)
    response = post(client, "/update", {"id": 3, "true_class": label})
    assert response.status_code == 422
    assert "true_class must be one of [0, 1]" in response.json["error"]
    assert stored_rows()[0].true_value is None


def test_update_checks_the_id_too(client):
    response = post(client, "/update", {"id": True, "true_class": 1})
    assert response.status_code == 422
    assert response.json["error"].startswith(ONE_OF)


# --- GET /health --------------------------------------------------------------------


def test_health_reports_model_versions_and_database(client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["model"]["task"] == "binary"
    assert body["model"]["classes"] == [0, 1]
    assert (body["model"]["threshold"], body["model"]["positive_class"]) == (0.5, 1)
    assert {"python", "scikit-learn", "pandas", "numpy", "flask", "peewee"} <= set(body["versions"])


@pytest.fixture
def unreachable_database(app):
    """The app's database swapped for a PostgreSQL server that is not there."""
    nowhere = database.open_database(f"postgresql://postgres@127.0.0.1:{free_port()}/x", 1)
    reachable = service.database.obj
    service.database.initialize(nowhere)
    yield
    service.database.initialize(reachable)


def test_a_database_that_cannot_be_reached_is_503(client, example, unreachable_database):
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json["error"] == "The database is unavailable"
    assert health.json["database"]["status"] == "unavailable"

    for response in (
        predict(client, 1, example),
        post(client, "/update", {"id": 1, "true_class": 0}),
    ):
        assert response.status_code == 503
        assert response.json == {"error": "The database is unavailable; retry in a few seconds"}
        assert response.headers["Retry-After"] == "1"


# --- GET /list-db-contents ----------------------------------------------------------


@pytest.fixture
def admin_client(database_url):
    app = service.create_app({"DATABASE_URL": database_url, "ADMIN_TOKEN": "s3cret"})
    return app.test_client()


def test_listing_is_hidden_without_the_token(client, admin_client):
    assert client.get("/list-db-contents").status_code == 404  # ADMIN_TOKEN unset
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cre"}):
        response = admin_client.get("/list-db-contents", headers=headers)
        assert response.status_code == 404
        assert response.json == {"error": "Not found: /list-db-contents"}


def test_listing_pages_through_rows_newest_first(admin_client, example):
    for observation_id in range(5):
        predict(admin_client, observation_id, example)
    headers = {"Authorization": "Bearer s3cret"}

    first = admin_client.get("/list-db-contents?limit=2", headers=headers).json
    assert [row["observation_id"] for row in first["predictions"]] == [4, 3]
    assert set(first["predictions"][0]) == PREDICTION_KEYS
    url = f"/list-db-contents?limit=2&before_id={first['next_before_id']}"
    second = admin_client.get(url, headers=headers).json
    assert [row["observation_id"] for row in second["predictions"]] == [2, 1]
    last = admin_client.get(
        f"/list-db-contents?before_id={second['next_before_id']}", headers=headers
    )
    assert [row["observation_id"] for row in last.json["predictions"]] == [0]
    assert last.json["next_before_id"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=ten", "before_id=1.5"])
def test_listing_checks_its_parameters(admin_client, query):
    response = admin_client.get(
        f"/list-db-contents?{query}", headers={"Authorization": "Bearer s3cret"}
    )
    assert response.status_code == 422
    assert response.json["error"].split()[0] in ("limit", "before_id")


# --- Errors: always JSON, never a traceback ----------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "Request body is not valid JSON"),
        (b"", "Request body is not valid JSON"),
        (b"\xff\xfe{}", "Request body is not valid JSON"),
        # Too deep for json on every Python (3.13 parses 5,000 levels), yet under 64 KiB.
        (b"[" * 30_000 + b"]" * 30_000, "Request body is not valid JSON"),
        (b"[1, 2]", "Request body must be a JSON object"),
        (b'"text"', "Request body must be a JSON object"),
        (b"null", "Request body must be a JSON object"),
    ],
)
@pytest.mark.parametrize("path", ["/predict", "/update"])
def test_malformed_bodies_are_400(client, path, body, message):
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"].startswith(message)
    assert stored_rows() == []


def test_unknown_routes_and_methods_are_json(client):
    missing = client.get("/nowhere")
    assert (missing.status_code, missing.json) == (404, {"error": "Not found: /nowhere"})
    wrong = client.get("/predict")
    assert wrong.status_code == 405
    assert wrong.json == {"error": "Method GET is not allowed for /predict"}
    assert "POST" in wrong.headers["Allow"]


def test_a_body_over_the_limit_is_413(database_url, example):
    app = service.create_app({"DATABASE_URL": database_url, "MAX_CONTENT_LENGTH": 1000})
    body = json.dumps({"id": 1, "observation": dict(example, Name="x" * 2000)})
    response = app.test_client().post("/predict", data=body)
    assert response.status_code == 413
    assert response.json == {"error": "Request body is larger than 1000 bytes"}
    assert stored_rows() == []


def test_an_unexpected_error_is_500_with_a_request_id_and_writes_nothing(
    client, example, monkeypatch, caplog
):
    def broken(rows, model):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(scoring, "predict_outputs", broken)
    response = client.post(
        "/predict", json={"id": 1, "observation": example}, headers={"X-Request-ID": "abc123"}
    )
    assert response.status_code == 500
    assert response.json == {"error": "Internal server error (request id abc123)"}
    assert "secret internals" not in response.get_data(as_text=True)
    assert "request abc123 failed" in caplog.text  # the traceback goes to the log
    assert stored_rows() == []


def test_the_debugger_is_off(app):
    assert not app.debug


# --- The database ------------------------------------------------------------------


def test_sqlite_runs_in_wal_mode(client, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite only")
    client.get("/health")
    assert service.database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_both_postgres_url_spellings_work(database_url, example):
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    for index, scheme in enumerate(("postgres://", "postgresql://")):
        url = scheme + database_url.split("://", 1)[1]
        client = service.create_app({"DATABASE_URL": url}).test_client()
        assert predict(client, index, example).status_code == 200


def test_postgres_connections_lost_after_a_restart_are_replaced(client, database_url, example):
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    assert predict(client, 1, example).status_code == 200  # leaves a connection in the pool
    # What a server restart does to every open connection:
    killer = database.open_database(database_url, 5)
    killer.execute_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    killer.close()
    assert predict(client, 2, example).status_code == 200
    assert client.get("/health").status_code == 200
