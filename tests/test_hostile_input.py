"""Hostile input: fuzzing against the served OpenAPI document, odd values, oversized and deep
bodies, secrets. The fuzzing runs for the tutorial's contract, and briefly for the
stop-and-search brief's (a flat body, a string id, a decision). The live servers run with API
keys, a rate limit and load shedding on (reliability_helpers.PUBLIC), as a public one does.

Run with `pytest -s` to see the figures (fuzz examples tried, statuses, memory).
"""

import dataclasses
import hmac
import json
import math
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
import requests
import schemathesis
from conftest import EXAMPLE, ROOT, TITANIC, LiveServer, free_port, probabilities, service
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from playhouse.db_url import connect
from reliability_helpers import (
    KEYED,
    PUBLIC_KEY,
    ThrowawayPostgres,
    gunicorn_workers,
    memory_kib,
    public,
    shipped_model,
    stored_rows,
    wait_for_workers,
)
from schemathesis import GenerationMode
from test_openapi import check_against_spec

from model_service import artifacts, parsing, web

ADMIN_TOKEN = "admin-" + "7f3a9c" * 4
LIMIT = 64 * 1024  # the default MAX_REQUEST_BYTES
KEY_HEADER = {"X-API-Key": PUBLIC_KEY}  # the live servers' keys are on (PUBLIC)
KEY_LINE = f"X-API-Key: {PUBLIC_KEY}\r\n".encode()

# Bounded and repeatable: a fixed number of examples from a fixed seed, no example
# database written into the repository, no shrinking (which has no fixed duration).
BOUNDED = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
}

# --- Strategies --------------------------------------------------------------------------

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=INT64_MIN - 2, max_value=INT64_MAX + 2)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


def right(kind):
    """Values the validator must accept for a column of this kind."""
    return {
        "integer": st.integers(INT64_MIN, INT64_MAX)
        | st.integers(-5, 5).map(float)
        | st.sampled_from([1, 2, 3, INT64_MIN, INT64_MAX]),
        "float": st.floats(allow_nan=True, allow_infinity=False) | st.integers() | st.none(),
        "string": st.text(max_size=12) | st.sampled_from(["male", "female", "S", "C85"]),
    }[kind]


def plausible(kind):
    """Values a client might send for a column of this kind, right or wrong."""
    return right(kind) | json_scalars


def observations():
    """Any JSON value; objects with the columns, right or wrong; and mostly right ones."""
    columns = shipped_model().columns
    kinds = shipped_model().kinds
    extra = st.dictionaries(st.text(max_size=6), json_scalars, max_size=2)
    any_columns = st.fixed_dictionaries(
        {}, optional={column: plausible(kinds[column]) for column in columns}
    )
    required = [column for column in columns if kinds[column] in ("integer", "boolean")]
    mostly_right = st.fixed_dictionaries(
        {column: right(kinds[column]) for column in required},
        optional={
            column: st.one_of(right(kinds[column]), right(kinds[column]), json_scalars)
            for column in columns
            if column not in required
        },
    )
    with_extra = (mostly_right | any_columns).flatmap(
        lambda known: extra.map(lambda more: {**more, **known})
    )
    return with_extra | json_values


def acceptable(value, kind):
    """The rule the validator must follow, written independently of model_service/parsing.py."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if kind == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, float):
            return math.isfinite(value) and value.is_integer() and INT64_MIN <= value <= INT64_MAX
        return isinstance(value, int) and INT64_MIN <= value <= INT64_MAX
    if missing:
        return True
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        try:
            return math.isfinite(float(value))
        except OverflowError:
            return False
    if kind == "string":
        return isinstance(value, str)
    raise AssertionError(kind)


class FrameSpy:
    """Stands in for the pipeline: records the frame the service builds."""

    def predict_proba(self, frame):
        self.frame = frame
        return np.array([[0.25, 0.75]] * len(frame))


# --- The observation validator, in-process -------------------------------------------------

VALIDATOR_EXAMPLES = 400


def test_any_observation_is_a_typed_one_row_frame_or_a_422_naming_the_fields():
    model = shipped_model()
    seen = Counter()

    @given(observation=observations())
    @settings(max_examples=VALIDATOR_EXAMPLES, **BOUNDED)
    def check(observation):
        if isinstance(observation, dict):
            bad = [c for c in model.columns if not acceptable(observation.get(c), model.kinds[c])]
        else:
            bad = None
        try:
            values = parsing.validate_observation(observation, model)
        except service.ApiError as error:
            seen["422"] += 1
            assert error.status == 422
            if bad is None:
                assert "observation must be a JSON object" in error.message
            else:
                assert bad, f"refused without a reason: {observation!r}: {error.message}"
                for column in model.columns:
                    named = f"observation.{column}" in error.message
                    assert named == (column in bad), (column, observation, error.message)
            return
        seen["frame"] += 1
        assert bad == [], f"accepted {observation!r} despite {bad}"
        spy = FrameSpy()
        probabilities([values], dataclasses.replace(model, pipeline=spy))
        assert spy.frame.shape == (1, len(model.columns))
        assert list(spy.frame.columns) == model.columns
        assert spy.frame.dtypes.to_dict() == model.dtypes
        # And the real pipeline scores it: a probability, never NaN, never an error.
        proba = probabilities([values], model)[0]
        assert 0.0 <= proba <= 1.0

    check()
    print(f"\n[validator] examples={sum(seen.values())} frames={seen['frame']} 422={seen['422']}")
    assert seen["frame"] > 20 and seen["422"] > 20  # both sides were exercised


def test_any_json_body_gets_a_documented_answer_in_process(tmp_path):
    """For any JSON value as the body (or as its observation): no 500, the answer is in the spec."""
    app = service.create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"})
    client = app.test_client()
    statuses = Counter()

    bodies = (
        json_values
        | st.fixed_dictionaries({"id": json_scalars, "observation": observations()})
        | st.fixed_dictionaries(
            {"id": st.integers(INT64_MIN, INT64_MAX), "observation": observations()}
        )
    )

    @given(body=bodies, path=st.sampled_from(["/predict", "/update"]))
    @settings(max_examples=300, **BOUNDED)
    def check(body, path):
        response = client.post(path, data=json.dumps(body))
        statuses[(path, response.status_code)] += 1
        assert response.status_code < 500, response.get_data(as_text=True)
        check_against_spec(response, path, "POST")

    check()
    print(f"\n[json bodies in-process] {dict(statuses)}")


# --- Secrets ------------------------------------------------------------------------------


def test_the_admin_token_is_compared_in_constant_time(monkeypatch, tmp_path):
    app = service.create_app(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "ADMIN_TOKEN": ADMIN_TOKEN}
    )
    client = app.test_client()
    calls = []
    real = hmac.compare_digest

    def spy(offered, expected):
        calls.append((offered, expected))
        return real(offered, expected)

    monkeypatch.setattr(web.hmac, "compare_digest", spy)
    attempts = {
        ADMIN_TOKEN: 200,
        ADMIN_TOKEN[:-1] + "x": 404,  # right length, last character wrong
        ADMIN_TOKEN[:3]: 404,  # a prefix
        ADMIN_TOKEN + "0": 404,
        "": 404,
        "é" * 5: 404,
    }
    for offered, status in attempts.items():
        response = client.get("/list-db-contents", headers={"Authorization": f"Bearer {offered}"})
        assert response.status_code == status
        check_against_spec(response, "/list-db-contents", "GET")
        assert calls[-1] == (offered.encode(), ADMIN_TOKEN.encode())
    assert len(calls) == len(attempts)


def dockerfile_instructions():
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())  # join continued lines
    lines = [line.strip() for line in text.splitlines()]
    return [line.split(None, 1) for line in lines if line and not line.startswith("#")]


def test_the_container_runs_as_a_user_without_root_rights():
    instructions = dockerfile_instructions()
    names = [instruction[0].upper() for instruction in instructions]
    users = [i for i, name in enumerate(names) if name == "USER"]
    assert users, "the Dockerfile has no USER: the service would run as root"
    user = instructions[users[-1]][1].split(":")[0].strip()
    assert user not in ("root", "0")
    assert users[-1] < names.index("CMD"), "USER must come before CMD"
    # A named user must not be created with uid 0.
    created = [i[1] for i in instructions if i[0].upper() == "RUN" and "useradd" in i[1]]
    for command in created:
        assert not re.search(r"(--uid|-u)\s+0\b", command), command


@pytest.fixture
def postgres():
    with ThrowawayPostgres() as server:
        yield server


@pytest.mark.slow
def test_the_database_password_never_appears_in_logs_health_or_errors(postgres):
    password = postgres.password
    seen = []  # every body and header the clients got
    predict = json.dumps({"id": 1, "observation": EXAMPLE})
    retry = json.dumps({"id": 2, "observation": EXAMPLE})
    env = public(DATABASE_TIMEOUT="2", LOG_LEVEL="debug")
    server = LiveServer(postgres.url, env=env)

    def expect(calls):
        for method, path, body, status in calls:
            response = requests.request(
                method, server.url + path, data=body, headers=KEYED, timeout=20
            )
            seen.extend([response.text, json.dumps(dict(response.headers))])
            assert response.status_code == status, (method, path, response.text)

    try:
        server.wait_until_ready(seconds=60)
        expect(
            [
                ("POST", "/predict", predict, 200),
                ("GET", "/health", None, 200),
                ("POST", "/predict", "{", 400),
                ("POST", "/predict", '{"id": "x"}', 422),
                ("POST", "/predict", "x" * (LIMIT + 1), 413),
                ("GET", "/nowhere", None, 404),
                ("POST", "/update", '{"id": 99, "true_class": 1}', 404),
            ]
        )
        # The password is changed under the service: every new connection is refused.
        postgres.admin_sql(
            "ALTER ROLE app PASSWORD 'changed-elsewhere'",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'",
        )
        expect([("POST", "/predict", retry, 503), ("GET", "/health", None, 503)])
        # The server goes away altogether.
        postgres.stop()
        expect(
            [
                ("POST", "/predict", retry, 503),
                ("POST", "/update", '{"id": 1, "true_class": 1}', 503),
                ("GET", "/health", None, 503),
            ]
        )
        postgres.start()
        postgres.admin_sql(f"ALTER ROLE app PASSWORD '{password}'")
        expect([("POST", "/predict", retry, 200)])
    finally:
        server.stop()
    log = server.output()

    # A wrong password at start-up: one sentence, without the password either.
    wrong = "wrong" + password[::-1]
    environment = {
        **os.environ,
        "DATABASE_URL": postgres.url.replace(password, wrong),
        "PORT": str(free_port()),
    }
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"]
    start = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    startup_output = start.stdout + start.stderr
    assert start.returncode != 0
    assert "Cannot start:" in startup_output and "Traceback" not in startup_output

    assert "database unavailable" in log  # the outage was logged...
    for text in [log, startup_output, *seen]:
        assert password not in text  # ...without the password
        assert wrong not in text
    assert "changed-elsewhere" not in log


# --- Oversized, deep and huge bodies on a live server -------------------------------------


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    database_url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'predictions.db'}"
    server = LiveServer(database_url, workers=2, env=public(ADMIN_TOKEN=ADMIN_TOKEN))
    try:
        server.wait_until_ready(seconds=60)
        wait_for_workers(server, 2)
        server.database_url = database_url
        yield server
    finally:
        server.stop()


def raw_post(port, headers, chunks, seconds=20):
    """Send a request head and then body chunks, stopping as soon as the server answers.

    Returns (status, body, bytes of body sent, whether every chunk was sent).
    """
    deadline = time.monotonic() + seconds
    sent = 0
    finished = True
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n" + KEY_LINE + headers + b"\r\n"
        sock.sendall(head)
        for chunk in chunks:
            if time.monotonic() > deadline:
                raise AssertionError("the server neither read nor refused the body in time")
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:  # the server answered before the body was complete
                finished = False
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                finished = False
                break
            sent += len(chunk)
        while time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                break
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
            if response_complete(answer):
                break
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head.startswith(b"HTTP/") else None
    return status, body, sent, finished


def response_complete(answer):
    """Whether `answer` holds a whole response head and as much body as it announces."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    if not separator:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return length is not None and len(body) >= int(length.group(1))


def chunked(data, size=16 * 1024):
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        yield b"%x\r\n" % len(piece) + piece + b"\r\n"
    yield b"0\r\n\r\n"


@pytest.mark.slow
def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(hostile_server):
    declared = 100 * 1024 * 1024
    chunks = (b" " * 65536 for _ in range(declared // 65536))
    started = time.monotonic()
    status, body, sent, finished = raw_post(
        hostile_server.port, f"Content-Length: {declared}\r\n".encode(), chunks
    )
    seconds = time.monotonic() - started
    print(f"\n[413 content-length] answered after {sent} of {declared} bytes, {seconds:.2f} s")
    assert status == 413
    assert json.loads(body) == {"error": f"Request body is larger than {LIMIT} bytes"}
    assert not finished and sent < declared // 10


@pytest.mark.slow
def test_a_chunked_body_over_the_limit_is_refused(hostile_server):
    """No Content-Length to look at: the limit must hold while reading, and answer 413.

    A valid prediction padded with spaces past the limit must not be accepted.
    """
    observation_id = 413_413
    data = json.dumps({"id": observation_id, "observation": EXAMPLE}).encode()
    data += b" " * (4 * LIMIT)
    status, body, sent, _ = raw_post(
        hostile_server.port, b"Transfer-Encoding: chunked\r\n", chunked(data)
    )
    print(f"\n[413 chunked] status {status} after {sent} bytes sent: {body[:100]!r}")
    assert status == 413, body
    assert observation_id not in stored_rows(hostile_server.database_url)


@pytest.mark.slow
def test_deep_huge_and_odd_json_is_refused_without_harm(hostile_server):
    url = f"{hostile_server.url}/predict"
    workers = gunicorn_workers(hostile_server)
    before = {pid: memory_kib(pid, "Rss") for pid in workers}
    room = LIMIT - 100
    hostile = {
        "deep arrays": "[" * room,
        "deep objects": '{"a":' * (room // 5),
        "deep observation": '{"id": 1, "observation": ' + '{"a": ' * 9000 + "1" + "}" * 9001,
        "huge integer id": '{"id": ' + "9" * room + "}",
        "huge fraction": '{"id": 1, "observation": {"Age": 1' + "0" * (room - 40) + ".5}}",
        "huge exponent": '{"id": 1e999999, "observation": {}}',
        "many keys": "{" + ",".join(f'"k{i}": {i}' for i in range(room // 16)) + "}",
        "many small arrays": '{"id": 1, "observation": [' + "[]," * (room // 3 - 20) + "[]]}",
        "long string": '{"id": 1, "observation": {"Sex": "' + "x" * (room - 60) + '"}}',
        "nul and surrogates": '{"id": 1, "observation": {"Sex": "\\u0000\\ud800", "Pclass": 1}}',
        "not utf-8": b'{"id": 1, "observation": {"Sex": "\xff\xfe"}}',
        "empty": "",
        "a number": "1",
        "NaN": "NaN",
    }
    assert all(len(body) <= LIMIT for body in hostile.values())  # under the limit: all parsed
    statuses = {}
    with requests.Session() as session:
        session.headers.update(KEYED)
        for _ in range(15):  # bounded repetitions, to see whether memory grows
            for name, body in hostile.items():
                response = session.post(url, data=body, timeout=20)
                statuses[name] = response.status_code
                assert response.status_code in (400, 422), (name, response.text[:300])
                check_against_spec(response, "/predict", "POST")
    after = {pid: memory_kib(pid, "Rss") for pid in workers}
    print(f"\n[hostile bodies] statuses {statuses}; worker RSS {before} -> {after} KiB")
    assert gunicorn_workers(hostile_server) == workers  # no worker died
    assert requests.get(f"{hostile_server.url}/health", timeout=10).status_code == 200
    # Each body is parsed whole (it is under the limit), but nothing of it stays behind.
    for pid in workers:
        assert after[pid] - before[pid] < 32 * 1024, f"worker {pid} grew {before} -> {after} KiB"
    assert 1 not in stored_rows(hostile_server.database_url)  # every body above uses id 1


# --- Fuzzing the live server against the document it serves -------------------------------

# Per contract, examples per operation and mode (positive, negative). The operations are
# named by their part of the contract ("predict"...) or by their path.
FUZZ_EXAMPLES = {
    "tutorial": {
        "predict": (70, 70),
        "batch": (30, 30),
        "update": (35, 35),
        "/list-db-contents": (25, 25),
        "/health": (1, 0),
        "/openapi.yaml": (1, 0),
    },
    "stop_and_search": {  # briefly: the contract differs, the routes behind it do not
        "predict": (40, 40),
        "batch": (15, 15),
        "update": (25, 25),
        "/health": (1, 0),
    },
}
FUZZ_BRIEFS = {"tutorial": TITANIC, "stop_and_search": ROOT / "examples" / "stop_and_search"}


def fuzz_operation(schema, base_url, path, method, mode, examples, record, contract):
    """Run `examples` generated requests for one operation; every answer must match the spec."""
    from schemathesis.checks import ignored_auth, negative_data_rejection

    excluded = [ignored_auth]
    if path == contract.batch_path:
        # A batch whose items are wrong is still read: 200, with a 422 for each bad item
        # (check_batch_answer checks that instead).
        excluded.append(negative_data_rejection)
    # The admin route gets the admin token; the others the key (the server's keys are on),
    # sent with every call: negative cases may make up credentials of their own, and a
    # made-up X-API-Key would win over the right bearer.
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"} if "list" in path else KEY_HEADER
    strategy = schema[path][method].as_strategy(generation_mode=mode, headers=headers)

    @given(case=strategy)
    @settings(max_examples=examples, **BOUNDED)
    def fuzz(case):
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        record(path, response)
        # ignored_auth expects 401 without a token: /list-db-contents answers 404 on
        # purpose, so that it cannot be told from a route that does not exist. Valid data
        # must be accepted (positive_data_acceptance): the document describes exactly this
        # model's true values, so a valid update is a 200, or a 404 for an unknown id.
        case.validate_response(response, excluded_checks=excluded, headers=headers)
        if path == contract.batch_path:
            check_batch_answer(case.body, response)

    fuzz()


def check_batch_answer(body, response):
    """A batch that can be read is answered item by item; only one that cannot is refused."""
    items = body.get("observations") if isinstance(body, dict) else None
    readable = (
        isinstance(items, list)
        and 1 <= len(items) <= 1000
        and all(isinstance(item, dict) for item in items)
    )
    if readable:
        assert response.status_code == 200, (body, response.text[:300])
        assert len(response.json()["results"]) == len(items)
    else:
        assert response.status_code in (400, 413, 422), (body, response.text[:300])


def check_served(schema, response, path, method):
    """As check_against_spec, against the document the server serves."""
    documented = schema.raw_schema["paths"][path][method.lower()]["responses"]
    assert str(response.status_code) in documented, (path, response.status_code)
    schema[path][method.upper()].validate_response(response)


def stored_answers(database_url, model):
    """{row key: the answer its stored prediction and request give} read from the table."""
    database = connect(database_url)
    with database:
        cursor = database.execute_sql(
            "SELECT observation_key, prediction, observation FROM prediction"
        )
        rows = cursor.fetchall()
    return {
        key: model.contract.predict_answer(json.loads(output), json.loads(body), model.task)
        for key, output, body in rows
    }


@pytest.mark.slow
@pytest.mark.parametrize("brief", list(FUZZ_EXAMPLES))
def test_fuzzing_finds_no_server_error_and_the_table_grows_only_by_accepted_predictions(
    start_server, database_url, brief
):
    env = public(ADMIN_TOKEN=ADMIN_TOKEN, MODEL_DIR=str(FUZZ_BRIEFS[brief]))
    server = start_server(database_url, workers=2, env=env)
    model = artifacts.load_model(FUZZ_BRIEFS[brief])
    contract = model.contract
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.yaml")  # served by the app
    assert contract.predict_path in schema.raw_schema["paths"]

    tried = Counter()
    accepted = {}  # row key -> the answer of every 200 of the predict and batch routes
    answer_keys = list(contract.predict_sources or model.task.answer_sources)
    started = time.monotonic()

    def record(path, response):
        tried[(path, response.status_code)] += 1
        if path == contract.predict_path and response.status_code == 200:
            key = contract.read_id(json.loads(response.request.body))[0]
            accepted[key] = response.json()
        if path == contract.batch_path and response.status_code == 200:
            items = json.loads(response.request.body)["observations"]
            for item, result in zip(items, response.json()["results"], strict=True):
                if result["status"] == 200:
                    assert list(result["answer"]) == answer_keys
                    accepted[contract.read_id(item)[0]] = result["answer"]

    paths = {
        "predict": contract.predict_path,
        "batch": contract.batch_path,
        "update": contract.update_path,
    }
    for name, counts in FUZZ_EXAMPLES[brief].items():
        path = paths.get(name, name)
        method = "GET" if path.startswith(("/list", "/health", "/openapi")) else "POST"
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for mode, examples in zip(modes, counts, strict=True):
            if examples:
                fuzz_operation(schema, server.url, path, method, mode, examples, record, contract)

    # Raw bodies that are not JSON, or JSON of any shape, straight to the POST routes.
    raw_bodies = st.binary(max_size=200) | json_values.map(json.dumps).map(str.encode)
    raw_examples = 140 if brief == "tutorial" else 60

    @given(body=raw_bodies, path=st.sampled_from(list(paths.values())))
    @settings(max_examples=raw_examples, **BOUNDED)
    def fuzz_raw(body, path):
        response = requests.post(f"{server.url}{path}", data=body, headers=KEYED, timeout=30)
        record(path, response)
        assert response.status_code < 500
        check_served(schema, response, path, "POST")

    fuzz_raw()
    seconds = time.monotonic() - started

    rows = stored_answers(database_url, model)
    server_errors = sum(count for (_, status), count in tried.items() if status >= 500)
    print(
        f"\n[fuzz {brief} {database_url.split(':')[0]}] examples tried={sum(tried.values())} "
        f"in {seconds:.0f} s, 5xx={server_errors}, predictions accepted={len(accepted)}, "
        f"rows stored={len(rows)}; statuses {dict(sorted(tried.items()))}"
    )
    assert server_errors == 0
    assert sorted(rows) == sorted(accepted)  # no row without a 200, no 200 without a row
    assert all(rows[key] == answer for key, answer in accepted.items())  # as stored
    assert "Traceback" not in server.output()
