"""Personal data kept out of the store: api.toml's [store] drop and hash (privacy.py).

The model scores what the client sent; the database file, the PostgreSQL table, the logs
and /export never hold a dropped value or a hashed value, only its HMAC; retries and 409s
are told apart on the stored form; a list the contract cannot honour stops the start.
"""

import hashlib
import hmac
import inspect
import json
import logging
import shutil
from pathlib import Path

import pytest
import requests
from conftest import TITANIC, probabilities, same_probability, service
from playhouse.db_url import connect
from reliability_helpers import PID_IN_ACCESS_LOG, post_until_both_workers_answer

from model_service import artifacts
from model_service.errors import StartupError
from model_service.monitoring.rollups import TABLES
from model_service.parsing import validate_observation
from model_service.privacy import PREFIX, canonical_json

TOKEN = "privacy-admin-token"
SECRET = "s" * 40
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
CONTRACT = """
    [predict.answer]
    proba = "prediction.probability"
    name = "request.name"
    dob = "request.date_of_birth"

    [store]
    drop = ["name", "Cabin"]
    hash = ["date_of_birth", "Age"]
"""
# Values that occur nowhere else: found in the bytes of the database, they leaked.
NAME, BIRTH, AGE, CABIN = "Zebediah Quargleton", "1961-07-23", 61.4375, "Q77"
OBSERVATION = {
    "Pclass": 3,
    "Sex": "male",
    "Age": AGE,
    "SibSp": 1,
    "Parch": 0,
    "Fare": 7.25,
    "Cabin": CABIN,
    "Embarked": "S",
}
SECRETS = (NAME, BIRTH, str(AGE), CABIN)


def folder_with(tmp_path, toml):
    folder = tmp_path / "model"
    shutil.copytree(TITANIC, folder)
    (folder / "api.toml").write_text(inspect.cleandoc(toml))
    return folder


def app_with(tmp_path, database_url, toml=CONTRACT, secret=SECRET):
    settings = {
        "MODEL_DIR": str(folder_with(tmp_path, toml)),
        "DATABASE_URL": database_url,
        "ADMIN_TOKEN": TOKEN,
        "STORE_SECRET": secret,
    }
    return service.create_app(settings)


def body(id_, **changes):
    return {
        "id": id_,
        "name": NAME,
        "date_of_birth": BIRTH,
        "observation": {**OBSERVATION, **changes},
    }


def stored_bytes(database_url):
    """Everything the database holds: the SQLite file and its WAL, or every table's rows."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        files = [path, Path(f"{path}-wal"), Path(f"{path}-journal")]
        return b"".join(file.read_bytes() for file in files if file.exists())
    database = connect(database_url)
    with database:
        tables = ["prediction", *(table._meta.table_name for table in TABLES.values())]
        rows = [database.execute_sql(f"SELECT t::text FROM {name} t").fetchall() for name in tables]
    return "\n".join(text for table in rows for (text,) in table).encode()


def test_dropped_and_hashed_values_reach_neither_the_database_nor_the_logs(
    tmp_path, database_url, caplog
):
    caplog.set_level(logging.DEBUG)  # peewee's queries, with their parameters, too
    app = app_with(tmp_path, database_url)
    model, client = app.config["MODEL"], app.test_client()

    answer = client.post("/predict", json=body(1))
    assert answer.status_code == 200, answer.json
    # The model scored the values sent; the answer echoes the request, as it always does.
    expected = probabilities([validate_observation(OBSERVATION, model)], model)[0]
    assert same_probability(answer.json["proba"], expected)
    assert (answer.json["name"], answer.json["dob"]) == (NAME, BIRTH)
    assert client.post("/predict", json=body(2, Fare=8.05)).status_code == 200
    label = client.post("/update", json={"id": 1, "true_class": 1})
    assert label.status_code == 200
    export = client.get("/export?format=jsonl", headers=ADMIN)
    assert export.status_code == 200
    listed = client.get("/list-db-contents", headers=ADMIN).json["predictions"]
    stats = client.get("/stats", headers=ADMIN)
    assert stats.status_code == 200, stats.json
    # Drift leaves out the features not stored as scored; the rows stay readable.
    assert stats.json["unreadable_observations"] == 0
    assert set(stats.json["drift"]) == set(model.columns) - {"Cabin", "Age"}

    everything = stored_bytes(database_url)
    seen = [export.get_data(as_text=True), json.dumps(listed), caplog.text]
    for value in SECRETS:
        assert value.encode() not in everything, value
        assert not any(value in text for text in seen), value
    stored = json.loads(listed[-1]["observation"])  # id 1: the first row
    assert "name" not in stored and "Cabin" not in stored["observation"]
    assert stored["date_of_birth"].startswith(PREFIX) and len(stored["date_of_birth"]) == 76
    assert stored["observation"]["Age"].startswith(PREFIX)
    assert stored["date_of_birth"].encode() in everything


@pytest.mark.slow
def test_two_workers_keep_dropped_and_hashed_values_out_of_the_store_logs_and_export(
    tmp_path, database_url, start_server
):
    env = {
        "MODEL_DIR": str(folder_with(tmp_path, CONTRACT)),
        "STORE_SECRET": SECRET,
        "ADMIN_TOKEN": TOKEN,
        # gunicorn's own messages at debug (its configuration, each connection closed) on
        # top of the access lines and the app's log (INFO and up, app.py): none echoes a body.
        "LOG_LEVEL": "debug",
        **PID_IN_ACCESS_LOG,
    }
    server = start_server(database_url, workers=2, env=env)
    sent = (body(id_, Fare=7.25 + id_) for id_ in range(1, 51))
    answers = post_until_both_workers_answer(server, "/predict", sent)
    assert [answer.status_code for answer in answers] == [200] * len(answers)
    assert (answers[0].json()["name"], answers[0].json()["dob"]) == (NAME, BIRTH)
    retry = requests.post(f"{server.url}/predict", json=body(1, Fare=8.25), timeout=30)
    assert retry.status_code == 200 and retry.json() == answers[0].json()
    conflict = requests.post(f"{server.url}/predict", json=body(1, Fare=99.0), timeout=30)
    assert conflict.status_code == 409, conflict.text
    label = requests.post(f"{server.url}/update", json={"id": 1, "true_class": 1}, timeout=30)
    assert label.status_code == 200, label.text
    export = requests.get(f"{server.url}/export?format=jsonl", headers=ADMIN, timeout=30)
    assert export.status_code == 200 and len(export.text.splitlines()) == len(answers)

    everything, log = stored_bytes(database_url), server.output()
    for value in SECRETS:
        assert value.encode() not in everything, value
        assert value not in log, value
        assert value not in export.text, value
    assert SECRET not in log  # nor STORE_SECRET, in the debug dump of the configuration
    # The HMAC, computed here with the standard library: what the store holds instead.
    birth_json = json.dumps(BIRTH).encode()  # a string's canonical JSON: itself, quoted
    birth_hmac = PREFIX + hmac.new(SECRET.encode(), birth_json, hashlib.sha256).hexdigest()
    assert birth_hmac.encode() in everything
    assert birth_hmac in export.text


def test_retries_and_conflicts_are_told_apart_on_the_stored_form(tmp_path, database_url):
    client = app_with(tmp_path, database_url).test_client()
    first = client.post("/predict", json=body(7))
    assert first.status_code == 200
    # The same observation, written otherwise: 3.0 for 3, other keys first, another name.
    again = {"name": "someone else", "observation": {**OBSERVATION, "Pclass": 3.0}, "id": 7}
    retry = client.post("/predict", json=again)
    assert retry.status_code == 200, retry.json
    assert retry.json["proba"] == first.json["proba"]  # the stored answer, bit for bit
    # A dropped feature cannot be compared: a retry that changes only it is a retry.
    assert client.post("/predict", json=body(7, Cabin="B5")).json["proba"] == first.json["proba"]
    # A hashed feature is compared by its hash; a kept one by its value.
    for changed in ({"Age": AGE + 1}, {"Fare": 9.5}):
        conflict = client.post("/predict", json=body(7, **changed))
        assert conflict.status_code == 409, changed
        assert conflict.json["name"] == NAME  # the 409 quotes the request, as the 200 does


def test_equal_values_hash_alike_so_that_rows_still_group_and_join(tmp_path, database_url):
    app = app_with(tmp_path, database_url)
    client = app.test_client()
    for id_, age in ((1, AGE), (2, AGE), (3, 61)):
        assert client.post("/predict", json=body(id_, Age=age)).status_code == 200
    listed = client.get("/list-db-contents", headers=ADMIN).json["predictions"]
    rows = {row["observation_id"]: json.loads(row["observation"]) for row in listed}
    hashes = [rows[id_]["observation"]["Age"] for id_ in (1, 2, 3)]
    assert hashes[0] == hashes[1] != hashes[2]
    assert rows[1]["date_of_birth"] == rows[2]["date_of_birth"]
    ours = app.extensions["store"].stored_form
    assert ours.hashed(BIRTH) == rows[1]["date_of_birth"]
    # Another STORE_SECRET hashes otherwise: the key, not the value alone, makes the hash.
    theirs = app_with(tmp_path / "other", f"sqlite:///{tmp_path / 'other.db'}", secret="t" * 40)
    assert theirs.extensions["store"].stored_form.hashed(BIRTH) != ours.hashed(BIRTH)


def test_a_hashed_field_still_groups_in_stats(tmp_path, database_url):
    contract = """
        [stats]
        extra_columns = ["officer"]

        [store]
        hash = ["officer"]
    """
    client = app_with(tmp_path, database_url, contract).test_client()
    for id_, officer in enumerate(["Ann Smith", "Ann Smith", "Bob Jones"]):
        sent = {"id": id_, "observation": {**OBSERVATION, "officer": officer}}
        assert client.post("/predict", json=sent).status_code == 200
    answer = client.get("/stats", headers=ADMIN, query_string={"by": "officer"})
    assert answer.status_code == 200, answer.json
    groups = {g["group"]["officer"]: g["predictions"] for g in answer.json["groups"]}
    form = client.application.extensions["store"].stored_form
    assert groups == {form.hashed("Ann Smith"): 2, form.hashed("Bob Jones"): 1}


def test_a_number_is_hashed_by_its_value_and_a_string_as_written():
    assert canonical_json(3.0) == canonical_json(3) == "3"
    assert canonical_json("3") == '"3"'
    assert canonical_json({"b": [1.0, "é"], "a": 0.5}) == '{"a":0.5,"b":[1,"é"]}'


def test_without_a_store_table_the_body_is_stored_as_sent(client):
    text = '{"id": 5,   "observation": ' + json.dumps(OBSERVATION) + "}"
    response = client.post("/predict", data=text, content_type="application/json")
    assert response.status_code == 200
    stored = client.application.extensions["store"].table.get()
    assert stored.observation == text


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ('drop = ["nmae"]', "[store] drop: nmae is not a field this contract knows"),
        ('hash = ["id"]', "[store] hash: id is the id, which the row is stored under"),
        ('drop = ["observation"]', "[store] drop: observation holds the features"),
        ('drop = ["Age"]\nhash = ["Age"]', "[store] lists Age in both drop and hash"),
        ('drop = "Age"', "[store] drop must be a list of field names"),
        ('when_full = "panic"', '[store] when_full must be "refuse" or "answer"'),
        ("keep = []", "api.toml [store] has an unknown key 'keep'"),
    ],
)
def test_a_list_the_contract_cannot_honour_stops_the_start_naming_it(tmp_path, store, message):
    folder = folder_with(tmp_path, f"[store]\n{store}\n")
    with pytest.raises(StartupError) as stopped:
        artifacts.load_model(folder)
    assert message in str(stopped.value)


@pytest.mark.parametrize("secret", ["", "short"])
def test_hashing_without_a_long_store_secret_stops_the_start(tmp_path, secret):
    with pytest.raises(StartupError, match="hash needs STORE_SECRET, at least 32"):
        app_with(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", secret=secret)
