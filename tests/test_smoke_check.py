"""clients/smoke_check.py, run as a student runs it, against live local servers, for the
tutorial's contract and for briefs (api.toml): a flat body with a string id and a decision,
a composite key, the features under another field.

Against the example models and the briefs, the app is served in a thread of the test
process (InProcessServer): the script needs HTTP, not gunicorn, and this costs a tenth of a
second instead of seconds. test_score_csv.py, test_pages.py and test_openapi.py use it, and
the briefs below, too.
"""

import ast
import contextlib
import io
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import flask
import pytest
from conftest import EXAMPLE, ROOT, LiveServer, free_port, service
from playhouse.db_url import connect
from test_tutorial import TutorialServer
from werkzeug.serving import WSGIRequestHandler, make_server

from clients import replay_traffic, smoke_check

SCRIPT = str(ROOT / "clients" / "smoke_check.py")

# An observation for each example model (examples/<name>): the first row of its data set.
TASK_EXAMPLES = {
    "wine": {  # multiclass, classes "class_0", "class_1", "class_2"
        "alcohol": 14.23, "malic_acid": 1.71, "ash": 2.43, "alcalinity_of_ash": 15.6,
        "magnesium": 127.0, "total_phenols": 2.8, "flavanoids": 3.06,
        "nonflavanoid_phenols": 0.28, "proanthocyanins": 2.29, "color_intensity": 5.64,
        "hue": 1.04, "od280/od315_of_diluted_wines": 3.92, "proline": 1065.0,
    },
    "diabetes": {  # regression, one number
        "age": 59, "sex": 2, "bmi": 32.1, "bp": 101.0, "s1": 157.0, "s2": 93.2, "s3": 38.0,
        "s4": 4.0, "s5": 4.8598, "s6": 87.0,
    },
    "linnerud": {"Chins": 5, "Situps": 162, "Jumps": 60},  # regression, Weight and Waist
}  # fmt: skip

# The stop-and-search brief's example search (examples/stop_and_search): {"outcome": true}.
STOP_AND_SEARCH = {
    "Type": "Person and Vehicle search",
    "Date": "2022-10-21T12:26:00+01:00",
    "Part of a policing operation": False,
    "Latitude": 50.787215,
    "Longitude": -3.277162,
    "Gender": "Male",
    "Age range": "18-24",
    "Officer-defined ethnicity": "White",
    "Legislation": "Misuse of Drugs Act 1971 (section 23)",
    "Object of search": "Controlled drugs",
    "station": "devon-and-cornwall",
}

# Briefs beside an example model: every key of api.toml unlike the tutorial's.
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
answer = { athlete = "request.athlete", Jumps = "request.Jumps", weight = "request.weight", predicted_weight = "prediction.Weight" }
"""  # noqa: E501
WINES_TOML = """
[predict]
path = "/classify"
id = "wine_id"
observation = "sample"
answer = { cultivar = "prediction.label", scores = "prediction.probabilities", all = "prediction", wine = "request.wine_id" }

[update]
path = "/cultivar"
true = "cultivar"
"""  # noqa: E501
BRIEFS = {  # name: (the example model, its api.toml); None: the folder ships its own
    "stop_and_search": None,
    "athletes": ("linnerud", ATHLETES_TOML),
    "wines": ("wine", WINES_TOML),
}
BRIEF_OBSERVATIONS = {
    "stop_and_search": STOP_AND_SEARCH,
    "athletes": TASK_EXAMPLES["linnerud"],
    "wines": TASK_EXAMPLES["wine"],
}


def example_dir(name):
    return str(ROOT / "examples" / name)


def brief_dir(name, folder):
    """The folder of a brief: the model's artifacts and its api.toml (copied into `folder`)."""
    if BRIEFS[name] is None:
        return ROOT / "examples" / name
    example, toml = BRIEFS[name]
    target = folder / name
    if not target.exists():
        shutil.copytree(ROOT / "examples" / example, target)
        (target / "api.toml").write_text(toml)
    return target


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *_args):  # one line per request would drown the test's output
        pass


class InProcessServer:
    """create_app(settings) served by werkzeug in a thread, on a free port of 127.0.0.1.

    One at a time in a process: every app shares app.database, which the last one created
    points at its own database.
    """

    def __init__(self, settings):
        self.app = service.create_app(settings)
        self.server = make_server(
            "127.0.0.1", 0, self.app, threaded=True, request_handler=QuietHandler
        )
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self):
        # Polled every 10 ms rather than 500: shutdown() waits for the next poll.
        serve = partial(self.server.serve_forever, poll_interval=0.01)
        threading.Thread(target=serve, daemon=True).start()
        return self

    def __exit__(self, *_exc):
        self.server.shutdown()
        self.server.server_close()


def example_server(name, folder, **settings):
    """An InProcessServer of examples/<name>, or of a brief, on a fresh SQLite file."""
    model_dir = brief_dir(name, folder) if name in BRIEFS else example_dir(name)
    return InProcessServer(
        {
            "DATABASE_URL": f"sqlite:///{folder / f'{name}.db'}",
            "MODEL_DIR": str(model_dir),
            **settings,
        }
    )


def smoke(*arguments):
    """python clients/smoke_check.py <arguments> -> (exit code, what it printed)."""
    result = subprocess.run(
        [sys.executable, SCRIPT, *arguments], capture_output=True, text=True, timeout=120
    )
    return result.returncode, result.stdout + result.stderr


def lines_starting(output, word):
    return [line for line in output.splitlines() if line.startswith(word)]


def named(check, predict="/predict", update="/update"):
    """A check's name as printed, with the contract's routes."""
    return check.format(predict=predict, update=update)


@pytest.fixture(scope="module")
def shared_server():
    """One gunicorn on SQLite for the tests that only read its answers."""
    folder = tempfile.TemporaryDirectory()
    server = LiveServer(f"sqlite:///{folder.name}/predictions.db", workers=2)
    try:
        yield server.wait_until_ready()
    finally:
        server.stop()
        folder.cleanup()


# --- Whole runs ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_healthy_service_passes_every_check(start_server, database_url):
    server = start_server(database_url, workers=2)

    code, output = smoke(server.url)

    assert code == 0, output
    assert len(lines_starting(output, "PASS")) == len(smoke_check.CHECKS), output
    assert not lines_starting(output, "FAIL") and not lines_starting(output, "WARN")
    assert f"{len(smoke_check.CHECKS)} of {len(smoke_check.CHECKS)} checks passed" in output
    assert "contract: POST /predict: id id (integer or string), the features in " in output
    # What it leaves in the database: one prediction, under a big id, labelled.
    database = connect(database_url)
    with database:
        rows = database.execute_sql("SELECT observation_id, true_value FROM prediction").fetchall()
    assert len(rows) == 1
    assert rows[0][0] >= 10**12 and json.loads(rows[0][1]) == 1  # the positive class


@pytest.mark.parametrize("name", list(TASK_EXAMPLES))
def test_a_model_of_another_task_passes_every_check(name, tmp_path):
    observation = TASK_EXAMPLES[name]
    out = io.StringIO()
    with example_server(name, tmp_path) as server:
        code = smoke_check.main([server.url, "--observation", json.dumps(observation)], out=out)
        rows = list(service.Prediction.select())
    output = out.getvalue()

    assert code == 0, output
    assert len(lines_starting(output, "PASS")) == len(smoke_check.CHECKS), output
    task = "multiclass" if name == "wine" else "regression"
    assert f"columns, a {task} model" in output
    # The true outcome sent is the prediction itself, under the task's name.
    [row] = rows
    prediction = json.loads(row.prediction)
    truth = json.loads(row.true_value)
    if name == "wine":
        assert truth == prediction["label"] and f"true_class {json.dumps(truth)}" in output
    elif name == "diabetes":
        assert truth == prediction["value"] and "true_value " in output
    else:
        assert truth == prediction and set(truth) == {"Weight", "Waist"}


def test_the_stop_and_search_brief_passes_every_check_as_a_student_runs_it(tmp_path):
    """The script as a subprocess: its routes, a string id, a flat body, a decision."""
    with example_server("stop_and_search", tmp_path) as server:
        code, output = smoke(server.url, "--observation", json.dumps(STOP_AND_SEARCH))
        [row] = list(service.Prediction.select())

    assert code == 0, output
    assert len(lines_starting(output, "PASS")) == len(smoke_check.CHECKS), output
    for check in (smoke_check.PREDICT, smoke_check.UPDATE, smoke_check.UNKNOWN):
        assert f"PASS  {named(check, '/should_search', '/search_result')}" in output
    assert re.search(
        r'PASS  POST /should_search .*\(id "smoke-[0-9a-f]{16}": outcome true\)', output
    )
    assert (
        "contract: POST /should_search: id observation_id (string), the features at the top "
        in output
    )
    assert "PASS  POST /search_result stores the true outcome (outcome true)" in output
    # One row, under the string id, its body flat, its true outcome the positive class.
    assert json.loads(row.observation_key).startswith("smoke-") and row.observation_id is None
    assert json.loads(row.observation)["Latitude"] == STOP_AND_SEARCH["Latitude"]
    assert json.loads(row.true_value) is True


@pytest.mark.parametrize("name", ["athletes", "wines"])
def test_a_composite_key_and_another_observation_field_pass_every_check(name, tmp_path):
    out = io.StringIO()
    observation = BRIEF_OBSERVATIONS[name]
    with example_server(name, tmp_path) as server:
        code = smoke_check.main([server.url, "--observation", json.dumps(observation)], out=out)
        [row] = list(service.Prediction.select())
    output = out.getvalue()

    assert code == 0, output
    assert len(lines_starting(output, "PASS")) == len(smoke_check.CHECKS), output
    key = json.loads(row.observation_key)
    if name == "athletes":  # the key: a random athlete, and the observation's Jumps
        assert key[0].startswith("smoke-") and key[1] == observation["Jumps"]
        assert "PASS  POST /measured stores the true outcome (weight " in output
    else:
        assert isinstance(key, int) and key >= 10**12
        assert json.loads(row.observation)["sample"] == observation


# --- A service with API keys ---------------------------------------------------------------

API_KEY = "smoke-key-4b9e2d71c0a3f658"
API_KEYS = f"smoke:{API_KEY}"
NEEDS_KEY = "the service needs an API key: pass --api-key or set the environment variable API_KEY"
REFUSED_KEY = "the service refused the API key given (--api-key or API_KEY)"


def keyed_server(folder):
    """The Titanic example with API_KEYS on, recording which requests carried X-API-Key."""
    server = example_server("titanic", folder, API_KEYS=API_KEYS)
    server.keyed = []  # (path, whether the request carried the right key)

    @server.app.before_request
    def record():
        server.keyed.append((flask.request.path, flask.request.headers.get("X-API-Key") == API_KEY))

    return server


@pytest.mark.parametrize(
    ("given", "arguments", "refused_at"),
    [
        ("--api-key", [], None),
        ("nothing", [], smoke_check.PREDICT),
        ("a wrong key", [], smoke_check.PREDICT),
        ("nothing", ["--observation", '{"x": 1}'], smoke_check.UNKNOWN),  # no prediction sent
    ],
)
def test_a_service_with_api_keys_gets_the_key_or_says_what_to_do(
    given, arguments, refused_at, tmp_path, monkeypatch
):
    monkeypatch.delenv("API_KEY", raising=False)  # "nothing" is nothing
    keys = {"--api-key": ["--api-key", API_KEY], "a wrong key": ["--api-key", API_KEY + "0"]}
    out = io.StringIO()
    with keyed_server(tmp_path) as server:
        code = smoke_check.main([server.url, *keys.get(given, []), *arguments], out=out)
    output = out.getvalue()

    assert API_KEY not in output
    # The key goes to the routes that score or label, and to no other.
    sent_to = {path for path, keyed in server.keyed if keyed}
    assert ("/health", False) in server.keyed
    if refused_at is None:
        assert code == 0, output
        assert len(lines_starting(output, "PASS")) == len(smoke_check.CHECKS), output
        assert sent_to == {"/predict", "/update"}
        return
    assert code == 1 and not sent_to
    fix = NEEDS_KEY if given == "nothing" else REFUSED_KEY
    refused = output.split(f"FAIL  {named(refused_at)}\n")[1]
    assert refused.startswith("      got: HTTP 401: ") and f"fix: {fix}" in refused, output
    assert output.count("got: HTTP 401") == 1  # the checks after it are refused alike:
    for name in smoke_check.CHECKS[smoke_check.CHECKS.index(refused_at) + 1 :]:
        assert f"SKIP  {named(name)} (needs an API key the service accepts)" in output


def test_the_api_key_is_read_from_the_environment_as_a_student_sets_it(tmp_path, monkeypatch):
    monkeypatch.setenv("API_KEY", API_KEY)
    with keyed_server(tmp_path) as server:
        code, output = smoke(server.url)
    assert code == 0, output
    assert API_KEY not in output
    assert "API_KEY" in smoke("--help")[1]  # the default, documented


class Redirecting(BaseHTTPRequestHandler):
    """Answers every request with a redirect to itself, recording the X-API-Key it got."""

    keys = []

    def do_POST(self):
        self.keys.append(self.headers.get("X-API-Key"))
        self.send_response(302)
        self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *_args):
        pass


@contextlib.contextmanager
def redirecting_server():
    """A server that redirects: followed, a redirect would carry the key elsewhere."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    Redirecting.keys = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Redirecting.keys
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_with_the_key_does_not_follow_a_redirect():
    with redirecting_server() as (url, keys):
        client = smoke_check.Client(url, timeout=5, api_key=API_KEY)
        assert client.post("/predict", {"id": 1}).status == 302
        assert keys == [API_KEY]  # the redirect was not followed
        assert client.request("GET", "/health").status == 302  # followed, till urllib stops
        assert None in keys[1:] and API_KEY not in keys[1:]


def test_an_api_key_no_header_can_carry_is_refused_without_showing_it(capsys):
    key = "secret key\nof-mine"
    with pytest.raises(SystemExit) as stopped:
        smoke_check.parse_arguments(["http://x", "--api-key", key])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and "--api-key or API_KEY" in error
    assert "secret" not in error
    assert smoke_check.parse_arguments(["http://x", "--api-key", f" {API_KEY}\n"]).api_key == (
        API_KEY
    )


# --- The answers, checked key by key as the contract's sources say -------------------------

MODELS = {  # what /health reports of each task's model
    "binary": {"task": "binary", "classes": [0, 1], "threshold": 0.5, "positive_class": 1},
    "brief": {"task": "binary", "classes": [False, True], "threshold": 0.1, "positive_class": True},
    "multiclass": {"task": "multiclass", "classes": ["a", "b", 3]},
    "regression": {"task": "regression", "targets": None},
    "two targets": {"task": "regression", "targets": ["w", "h"]},
}


def brief(model, answer, **predict):
    """A Brief whose predict route answers `answer` ({key: source})."""
    described = smoke_check.tutorial_contract(MODELS[model])
    described["predict"].update(answer=answer, **predict)
    return smoke_check.Brief(described, MODELS[model])


@pytest.mark.parametrize(
    ("model", "body", "problem"),
    [
        ("binary", {"proba": 0.3}, None),
        ("binary", {"proba": 1.5}, "proba: 1.5 is no probability (0 to 1)"),
        ("binary", {"label": 1}, "the answer has no proba"),
        ("binary", {"proba": 0.3, "label": 1}, "keys the contract does not name: label"),
        ("multiclass", {"label": 3, "probabilities": {"a": 0.2, "b": 0.3, "3": 0.5}}, None),
        ("multiclass", {"label": "3", "probabilities": {}}, 'the label "3" is not one of'),
        ("multiclass", {"label": "a", "probabilities": {"a": 1.0}}, "one entry per class: 3, a"),
        ("multiclass", {"label": "a", "probabilities": {"a": 0.6, "b": 0.6, "3": 0}}, "add up"),
        ("regression", {"prediction": -2.5}, None),
        ("regression", {"prediction": "2.5"}, "is not a finite number"),
        ("regression", {"proba": 0.5}, "the answer has no prediction"),
        ("two targets", {"prediction": {"w": 1, "h": 2.5}}, None),
        ("two targets", {"prediction": {"w": 1}}, "a finite number for each target: w, h"),
        ("two targets", {"prediction": 3.0}, "a finite number for each target"),
    ],
)
def test_each_tutorial_answer_is_checked_for_its_own_keys_and_types(model, body, problem):
    response = smoke_check.Response(200, json.dumps(body).encode())
    found = smoke_check.answer_problem(response, MODELS[model])
    assert found == problem if problem is None else problem in found


DECISION = {"outcome": "prediction.decision"}
BOTH = {"p": "prediction.probability", "d": "prediction.decision"}
WHOLE = {"all": "prediction"}
ECHO = {"id": "request.observation_id", **DECISION}


@pytest.mark.parametrize(
    ("answer", "body", "problem"),
    [
        (DECISION, {"outcome": True}, None),
        (DECISION, {"outcome": 0.3}, "outcome: 0.3 is no decision (a boolean)"),
        (DECISION, {"outcome": "true"}, 'outcome: "true" is no decision'),
        (DECISION, {}, "the answer has no outcome"),
        (DECISION, {"outcome": True, "proba": 0.3}, "keys the contract does not name: proba"),
        ({"outcome": "prediction.label"}, {"outcome": True}, None),
        ({"outcome": "prediction.label"}, {"outcome": 1}, "the label 1 is not one of"),
        (BOTH, {"p": 0.2, "d": True}, None),
        (BOTH, {"p": 0.05, "d": True}, "does not follow from the probability 0.05"),
        (WHOLE, {"all": {"probability": 0.2, "decision": True, "label": True}}, None),
        (WHOLE, {"all": {"probability": 0.2}}, "an object of probability, decision"),
        (ECHO, {"id": "a1", "outcome": False}, None),
        (ECHO, {"id": "b2", "outcome": False}, 'id: "b2" is not the observation_id sent'),
    ],
)
def test_each_key_of_a_briefs_answer_is_checked_as_its_source_says(answer, body, problem):
    sent = {"observation_id": "a1", **STOP_AND_SEARCH}
    contract = brief(
        "brief",
        answer,
        id=["observation_id"],
        id_types={"observation_id": "string"},
        observation="",
    )
    response = smoke_check.Response(200, json.dumps(body).encode())
    found = smoke_check.answer_problem(response, MODELS["brief"], contract, sent)
    assert found == problem if problem is None else problem in found


def test_a_conflict_may_leave_out_what_the_request_said():
    """A 409 answers the model's part: a key quoting the request is null there."""
    contract = brief("brief", {"id": "request.observation_id", **DECISION})
    body = {"error": "Observation ID ... already exists", "id": None, "outcome": True}
    response = smoke_check.Response(409, json.dumps(body).encode())
    assert smoke_check.answer_problem(response, MODELS["brief"], contract, conflict=True) is None
    assert (
        smoke_check.answer_problem(
            smoke_check.Response(409, b'{"error": "x"}'), MODELS["brief"], contract, conflict=True
        )
        == "the answer has no id, outcome"
    )


def test_a_service_from_before_contracts_is_spoken_to_as_the_tutorial():
    model = MODELS["binary"]
    old = smoke_check.read_brief({"status": "ok", "model": model}, model)
    assert (old.predict_path, old.update_path, old.id_fields) == ("/predict", "/update", ["id"])
    assert old.predict_body({"id": 3}, {"a": 1}) == {"id": 3, "observation": {"a": 1}}
    assert smoke_check.read_brief({"contract": {"predict": {}}}, model) is None  # unreadable


def test_the_bodies_follow_the_contracts_shape_and_id_types():
    model = {**MODELS["two targets"], "columns": ["Chins", "Jumps"]}
    described = {
        "predict": {
            "path": "/forecast",
            "id": ["athlete", "Jumps"],
            "id_types": {"athlete": "string", "Jumps": "integer"},
            "observation": "",
            "answer": {"weight": "prediction.w"},
        },
        "update": {"path": "/measured", "true": {"w": "weight", "h": "height"}, "answer": {}},
    }
    contract = smoke_check.Brief(described, model)
    ids = contract.fresh_ids({"Chins": 5, "Jumps": 60})
    assert ids["Jumps"] == 60 and re.fullmatch(r"smoke-[0-9a-f]{16}", ids["athlete"])
    assert contract.predict_body(ids, {"Chins": 5, "Jumps": 60}) == {"Chins": 5, **ids}
    update = contract.update_body(ids, {"w": 70.0, "h": 1.8})
    assert update == {**ids, "weight": 70.0, "height": 1.8}
    assert contract.client_id(ids) == ids  # a composite id: every field
    # The conflict and the invalid observation leave the id's columns alone.
    assert smoke_check.changed_copy({"Jumps": 60, "Chins": 5}, keep=["Jumps"]) == {
        "Jumps": 60,
        "Chins": 6,
    }
    assert smoke_check.wrongly_typed_copy({"Jumps": 60, "Chins": 5}, keep=["Jumps"]) == {
        "Jumps": 60,
        "Chins": "not a number",
    }


def test_the_update_sends_the_field_and_a_value_of_the_task():
    assert smoke_check.some_truth(MODELS["binary"]) == 1  # the positive class
    assert smoke_check.some_truth(MODELS["brief"]) is True
    assert smoke_check.some_truth({}) == 1  # a service from before any task: 0 and 1
    assert smoke_check.some_truth(MODELS["multiclass"]) == "a"
    assert smoke_check.some_truth(MODELS["two targets"]) == {"w": 0.0, "h": 0.0}
    assert smoke_check.truth_for({"label": 3}, MODELS["multiclass"]) == 3  # the prediction
    assert smoke_check.truth_for({}, MODELS["multiclass"]) == "a"  # an answer without it
    assert smoke_check.truth_for({"value": 2.5}, MODELS["regression"]) == 2.5
    assert smoke_check.truth_for({"w": 1.0, "h": 2.0}, MODELS["two targets"]) == {
        "w": 1.0,
        "h": 2.0,
    }
    fields = {task: smoke_check.TRUTH_FIELDS[task] for task in ("binary", "regression")}
    assert fields == {"binary": "true_class", "regression": "true_value"}


# --- replay_traffic.py, which speaks the contract too --------------------------------------


def test_the_replay_refuses_another_model_in_one_sentence(tmp_path, capsys):
    with example_server("wine", tmp_path) as server:
        code = replay_traffic.main([server.url])
        stored = service.Prediction.select().count()
    printed = capsys.readouterr().out.strip()
    assert code == 2 and stored == 0  # nothing sent
    assert printed.count("\n") == 0 and printed.endswith("for the tutorial's model only.")
    assert "cannot take notebook 1's Titanic passengers" in printed
    assert "its model takes no Pclass, Sex, Age" in printed


def test_the_replay_sends_the_outcome_under_the_tasks_field():
    titanic = {"task": "binary", "classes": [0, 1], "columns": EXAMPLE_COLUMNS}
    assert replay_traffic.truth_field_for(titanic) == "true_class"
    assert replay_traffic.truth_field_for({"columns": EXAMPLE_COLUMNS}) == "true_class"  # old
    regressor = {"task": "regression", "targets": None, "columns": EXAMPLE_COLUMNS}
    assert replay_traffic.truth_field_for(regressor) == "true_value"
    for model, reason in [
        ({**titanic, "classes": [False, True]}, "predicts the classes [false, true]"),
        ({**titanic, "task": "ranking"}, "is a ranking model"),
        ({**regressor, "targets": ["a", "b"]}, "predicts the targets a, b"),
    ]:
        with pytest.raises(replay_traffic.NotTheTutorialModel, match=re.escape(reason)):
            replay_traffic.truth_field_for(model)


TITANIC_BRIEF = {  # the passengers under a brief's contract: flat, string ids, "survived"
    "predict": {
        "path": "/will_survive",
        "id": ["passenger"],
        "id_types": {"passenger": "string"},
        "observation": "",
        "answer": {"survives": "prediction.decision"},
    },
    "update": {"path": "/survived", "true": "survived", "answer": "the stored row"},
}


def test_the_replay_speaks_the_contract_of_health():
    titanic = {"task": "binary", "classes": [0, 1], "columns": EXAMPLE_COLUMNS}
    assert replay_traffic.truth_field_for(titanic, TITANIC_BRIEF) == "survived"
    sent = []

    def post(path, body):
        sent.append((path, body))
        return 200, {}

    passengers = [(7, dict(EXAMPLE), 1), (9, dict(EXAMPLE, Pclass=3), 0)]
    answered = replay_traffic.replay(post, passengers, first_id=100, contract=TITANIC_BRIEF)
    assert answered == ({200: 2}, {200: 2})
    assert sorted(sent, key=str)[:2] == [
        ("/survived", {"passenger": "107", "survived": 1}),
        ("/survived", {"passenger": "109", "survived": 0}),
    ]
    assert ("/will_survive", {**EXAMPLE, "passenger": "107"}) in sent
    composite = json.loads(json.dumps(TITANIC_BRIEF))
    composite["predict"]["id"] = ["passenger", "Pclass"]
    with pytest.raises(replay_traffic.NotTheTutorialModel, match="not one field of its own"):
        replay_traffic.truth_field_for(titanic, composite)


EXAMPLE_COLUMNS = list(EXAMPLE)


# --- What goes wrong, and what the script says --------------------------------------------


@pytest.mark.slow
def test_an_observation_for_another_model_says_which_columns_to_send(shared_server):
    code, output = smoke(shared_server.url, "--observation", '{"petal_length": 1.4}')

    assert code == 1
    assert f"FAIL  {smoke_check.FITS}" in output
    assert "it lacks ['Pclass', 'Sex', 'Age'" in output
    assert "--observation" in output.split(f"FAIL  {smoke_check.FITS}")[1]
    assert len(lines_starting(output, "SKIP")) == 4  # the checks that need a prediction
    assert f"PASS  {named(smoke_check.UNKNOWN)}" in output


@pytest.mark.slow
def test_an_explicit_observation_is_used(shared_server):
    observation = dict(EXAMPLE, Pclass=1, Cabin="C85")
    code, output = smoke(shared_server.url, "--observation", json.dumps(observation))
    assert code == 0, output


@pytest.mark.slow
def test_a_deployed_service_on_sqlite_gets_a_warning(shared_server, monkeypatch):
    monkeypatch.setattr(smoke_check, "LOCAL_HOSTS", ())  # as if 127.0.0.1 were far away
    out = io.StringIO()
    assert smoke_check.main([shared_server.url], out=out) == 0
    assert "WARN  the deployed app stores predictions in SQLite" in out.getvalue()
    assert "PostgreSQL" in out.getvalue()


@pytest.mark.slow
def test_a_server_that_is_not_the_service_fails_with_what_to_fix():
    """The tutorial's first step answers /predict with 0.5 and has no /health."""
    server = TutorialServer("tutorial/step1_always_half.py", cwd=ROOT)
    try:
        server.wait_until_listening()
        code, output = smoke(server.url)
    finally:
        server.stop()

    assert code == 1
    assert f"FAIL  {smoke_check.HEALTH}" in output
    assert "got: HTTP 404" in output
    assert "fix: this URL serves something else than app.py" in output
    assert len(lines_starting(output, "SKIP")) == len(smoke_check.CHECKS) - 1


def test_nothing_listening_says_to_check_the_url():
    code, output = smoke(f"http://127.0.0.1:{free_port()}")

    assert code == 1
    assert "cannot connect" in output
    assert "fix: check the URL" in output
    assert f"0 of {len(smoke_check.CHECKS)} checks passed" in output


def test_a_server_that_never_answers_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # connections wait in the backlog: nobody answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        code, output = smoke(url, "--timeout", "0.5")

    assert code == 1
    assert "no answer within 0.5 s" in output


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["http://x", "--observation", "{bad"],
        ["http://x", "--observation", "[1]"],
        ["http://x", "--timeout", "0"],
    ],
)
def test_wrong_arguments_exit_with_2_and_say_why(arguments):
    with pytest.raises(SystemExit) as stopped:
        smoke_check.parse_arguments(arguments)
    assert stopped.value.code == 2


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("my-app.up.railway.app", "https://my-app.up.railway.app"),
        ("https://my-app.up.railway.app/", "https://my-app.up.railway.app"),
        ("localhost:5000", "http://localhost:5000"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000"),
    ],
)
def test_urls_are_completed(given, used):
    assert smoke_check.normalize_url(given) == used


def test_the_conflicting_and_the_invalid_observations_differ_as_intended():
    changed = smoke_check.changed_copy(EXAMPLE)
    assert changed == dict(EXAMPLE, Age=28.0)  # a float first: any model accepts it
    assert smoke_check.changed_copy({"Sex": "male"}) == {"Sex": None}
    assert smoke_check.changed_copy({"flag": True}) is None
    assert smoke_check.wrongly_typed_copy(EXAMPLE)["Pclass"] == "not a number"
    assert smoke_check.wrongly_typed_copy({"Sex": "male"}) == {"Sex": 0}
    assert smoke_check.wrongly_typed_copy({"flag": True}) == {"flag": "not a boolean"}
    assert smoke_check.wrongly_typed_copy({"Cabin": None}) is None


def test_fresh_ids_are_far_above_typical_ids_or_plainly_the_scripts():
    ids = {smoke_check.random_id("integer") for _ in range(100)}
    assert all(10**12 <= i < 2**62 for i in ids) and len(ids) == 100
    assert re.fullmatch(r"smoke-[0-9a-f]{16}", smoke_check.random_id("string"))


def test_it_needs_only_the_standard_library():
    """A student runs it with any Python, without the project's requirements."""
    tree = ast.parse((ROOT / "clients" / "smoke_check.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }
    assert imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names
