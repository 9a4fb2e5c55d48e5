"""clients/score_csv.py, run as a user runs it, against one live gunicorn per database.

The SQLite server is shared by the module (each test uses its own range of ids); with
TEST_DATABASE_URL set, the same tests run against a PostgreSQL server of the module's own
(ThrowawayPostgres), which the outage test stops and starts again. The example models of
the other tasks, and the briefs (a flat body with a string id and a decision, a composite
key, the features under another field), are served in-process
(test_smoke_check.InProcessServer): their rows and columns need no gunicorn.
"""

import contextlib
import csv
import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from conftest import DATABASES, EXAMPLE, ROOT, LiveServer, free_port, same_probability, service
from playhouse.db_url import connect
from reliability_helpers import (
    ThrowawayPostgres,
    gunicorn_workers,
    pipeline_probabilities,
    random_observations,
)
from test_smoke_check import (
    API_KEY,
    BRIEF_OBSERVATIONS,
    TASK_EXAMPLES,
    example_server,
    keyed_server,
    redirecting_server,
)

from clients import score_csv
from model_service.answer_columns import answer_columns, cell, dig

pytestmark = pytest.mark.slow

SCRIPT = str(ROOT / "clients" / "score_csv.py")
COLUMNS = list(EXAMPLE)  # the model's columns, in order
SERVER_ENV = {
    # Small limits, so that the tests can cross them: score_csv.py must adapt.
    "PREDICT_BATCH_MAX_OBSERVATIONS": "400",
    "PREDICT_BATCH_MAX_BYTES": str(256 * 1024),
    "DATABASE_TIMEOUT": "1",  # a locked SQLite file answers 503 after ~2 s, not 10
}


class Live:
    """A running server and what the tests need to reach its database."""

    def __init__(self, server, database_url, postgres=None, sqlite_path=None):
        self.server, self.url, self.database_url = server, server.url, database_url
        self.postgres, self.sqlite_path = postgres, sqlite_path


@pytest.fixture(scope="module")
def sqlite_live(tmp_path_factory):
    path = tmp_path_factory.mktemp("batch-score") / "predictions.db"
    server = LiveServer(f"sqlite:///{path}", workers=2, env=SERVER_ENV)
    try:
        server.wait_until_ready(seconds=60)
        yield Live(server, f"sqlite:///{path}", sqlite_path=path)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def postgresql_live():
    with ThrowawayPostgres() as postgres:
        server = LiveServer(postgres.url, workers=2, env=SERVER_ENV)
        try:
            server.wait_until_ready(seconds=60)
            yield Live(server, postgres.url, postgres=postgres)
        finally:
            server.stop()


@pytest.fixture(params=DATABASES)
def live(request):
    return request.getfixturevalue(f"{request.param}_live")


# --- Helpers ------------------------------------------------------------------------------


def run_script(*arguments, timeout=120):
    """python clients/score_csv.py <arguments> -> CompletedProcess (exit code, stdout, stderr)."""
    return subprocess.run(
        [sys.executable, SCRIPT, *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_script(*arguments):
    return subprocess.Popen(
        [sys.executable, SCRIPT, *map(str, arguments)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # pytest-xdist's worker processes ignore Ctrl+C, and a child inherits that: give the
        # script the default, as in a terminal, so that SIGINT interrupts it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def write_csv(path, header, rows):
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def passengers_csv(path, first_id, count, seed):
    """`count` varied passengers as CSV text cells (missing -> empty), ids from first_id."""
    observations = random_observations(count, seed)
    rows = [
        [first_id + index, *("" if o[c] is None else o[c] for c in COLUMNS)]
        for index, o in enumerate(observations)
    ]
    return write_csv(path, ["id", *COLUMNS], rows), observations


def stored(database_url, low, high):
    """{id: (proba, observation text)} for ids in [low, high), and the row count."""
    database = connect(database_url)
    with database:
        cursor = database.execute_sql(
            "SELECT observation_id, proba, observation FROM prediction "
            f"WHERE observation_id >= {int(low)} AND observation_id < {int(high)}"
        )
        rows = cursor.fetchall()
    return {int(r[0]): (float(r[1]), r[2]) for r in rows}, len(rows)


def wait_for_rows(database_url, low, high, at_least, process, seconds=60):
    """Poll the row count (cheaply: the script stores thousands of rows a second)."""
    database = connect(database_url)
    deadline = time.monotonic() + seconds
    with database.connection_context():  # not `with database`: one transaction, one snapshot
        while time.monotonic() < deadline:
            count = database.execute_sql(
                "SELECT count(*) FROM prediction "
                f"WHERE observation_id >= {int(low)} AND observation_id < {int(high)}"
            ).fetchone()[0]
            if count >= at_least:
                return
            assert process.poll() is None, process.communicate()
            time.sleep(0.01)
    raise AssertionError(f"fewer than {at_least} rows stored after {seconds} s")


def check_complete_run(result, output, database_url, low, count):
    """Exit 0, every row 200 in order, each stored once with the proba written."""
    assert result.returncode == 0, result.stderr
    rows = read_csv(output)
    assert [int(row["id"]) for row in rows] == list(range(low, low + count))
    assert {row["status"] for row in rows} == {"200"}
    table, row_count = stored(database_url, low, low + count)
    assert row_count == count  # nothing lost, nothing stored twice
    assert all(table[int(row["id"])][0] == float(row["proba"]) for row in rows)
    assert f"Scored {count:,} rows" in result.stdout
    return table


# --- The run docs/api.md shows, on the shipped sample ---------------------------------------


def docs_scoring_section():
    text = (ROOT / "docs" / "api.md").read_text()
    start = text.index("\n## Scoring a file")
    return text[start : text.index("\n## ", start + 1)]


def test_the_docs_run_on_the_shipped_sample_answers_what_they_show(sqlite_live, tmp_path):
    section = docs_scoring_section()
    command = re.search(r"^make score URL=\S+ IN=(\S+) OUT=(\S+)$", section, re.M)
    shown = section.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    summary = re.search(r"`(Scored 20 rows in .*?)`", section).group(1)
    sample = ROOT / command.group(1)

    result = run_script(sqlite_live.url, sample, tmp_path / command.group(2))

    assert result.returncode == 0, result.stderr
    pattern = re.escape(summary).replace(r"0\.2", r"[\d.]+").replace("110", r"[\d,]+")
    assert re.fullmatch(pattern, result.stdout.strip()), result.stdout
    written = (tmp_path / command.group(2)).read_text().splitlines()
    assert len(written) == 1 + len(read_csv(sample))
    for shown_line, line in zip(shown, written, strict=False):
        shown_cells, cells = next(csv.reader([shown_line])), next(csv.reader([line]))
        assert len(cells) == len(shown_cells)
        for expected, actual in zip(shown_cells, cells, strict=True):
            if re.fullmatch(r"0\.\d{6,}", expected):  # a probability the docs' machine wrote
                assert same_probability(float(actual), float(expected)), (actual, expected)
            else:
                assert actual == expected
    # The input columns are written back as they were read, text for text.
    inputs = read_csv(sample)
    outputs = read_csv(tmp_path / command.group(2))
    assert [{k: row[k] for k in inputs[0]} for row in outputs] == inputs


# --- The columns of each task ---------------------------------------------------------------

TASK_COLUMNS = {
    "wine": ["label", "probabilities_class_0", "probabilities_class_1", "probabilities_class_2"],
    "diabetes": ["prediction"],
    "linnerud": ["prediction_Weight", "prediction_Waist"],
}


def answer_cells(name, answer):
    """The cells OUTPUT.csv should hold for an answer of /predict, as text."""
    if name == "wine":
        return [answer["label"], *(repr(answer["probabilities"][f"class_{k}"]) for k in range(3))]
    if name == "diabetes":
        return [repr(answer["prediction"])]
    return [repr(answer["prediction"][target]) for target in ("Weight", "Waist")]


@pytest.mark.parametrize("name", list(TASK_COLUMNS))
def test_the_output_has_the_columns_of_the_models_task(name, tmp_path, capsys):
    observation = TASK_EXAMPLES[name]
    columns = list(observation)
    other = dict(observation, **{columns[0]: observation[columns[0]] + 1})
    rows = [[1, *observation.values()], [2, *other.values()], [3, "", *columns[1:]]]  # 3: 422
    source = write_csv(tmp_path / "in.csv", ["id", *columns], rows)
    output = tmp_path / "scored.csv"
    with example_server(name, tmp_path) as server:
        code = score_csv.main([server.url, str(source), str(output)])
        answers = [
            requests.post(f"{server.url}/predict", json={"id": i, "observation": o}).json()
            for i, o in [(1, observation), (2, other)]
        ]  # retries: the stored answers

    assert code == 1, capsys.readouterr().err
    with open(output, newline="") as file:
        header, *written = list(csv.reader(file))
    assert header == ["id", *columns, *TASK_COLUMNS[name], "status", "error"]
    answer_columns = slice(1 + len(columns), -2)
    for line, answer in zip(written, answers, strict=False):
        assert line[answer_columns] == answer_cells(name, answer)
        assert line[-2:] == ["200", ""]
    assert written[2][answer_columns] == [""] * len(TASK_COLUMNS[name])
    assert written[2][-2] == "422"
    noun = "label" if name == "wine" else "prediction"
    assert f"2 with a {noun}; 1 with an error (422: 1)" in capsys.readouterr().out


def test_an_input_column_named_like_an_answer_key_keeps_its_values(tmp_path, capsys):
    observation = TASK_EXAMPLES["wine"]
    header = ["id", *observation, "label"]  # the true labels, say
    source = write_csv(tmp_path / "in.csv", header, [[1, *observation.values(), "class_9"]])
    output = tmp_path / "out.csv"
    with example_server("wine", tmp_path) as server:
        assert score_csv.main([server.url, str(source), str(output)]) == 0
        [row] = read_csv(output)
        assert (row["label"], row["answer_label"]) == ("class_9", "class_0")
        assert "1 with a label." in capsys.readouterr().out
        status = write_csv(
            tmp_path / "status.csv", [*header, "status"], [[2, *observation.values(), "", "x"]]
        )
        message, _ = usage_error(capsys, server.url, status, tmp_path / "out2.csv")
    assert message == (
        f"{status} has a column 'status', which OUTPUT.csv needs for the result: rename it."
    )
    assert not (tmp_path / "out2.csv").exists()


# --- A brief's ids, body and answer --------------------------------------------------------

WINE_CLASSES = ["class_0", "class_1", "class_2"]
BRIEF_COLUMNS = {  # the id columns of the CSV, then the columns of the answer
    "stop_and_search": (["observation_id"], ["outcome"]),
    "athletes": (["athlete", "Jumps"], ["weight", "waist"]),
    "wines": (
        ["wine_id"],
        [
            "cultivar",
            *(f"scores_{c}" for c in WINE_CLASSES),
            "all_label",
            *(f"all_probabilities_{c}" for c in WINE_CLASSES),
            "wine",
        ],
    ),
}
BRIEF_IDS = {
    "stop_and_search": [{"observation_id": f"2022-0056{n:02d}"} for n in range(3)],
    "athletes": [{"athlete": name, "Jumps": 60} for name in ("ann", "bob", "cy")],
    "wines": [{"wine_id": n} for n in (1, 2, 3)],
}


def as_text(value):
    """A JSON value as a CSV cell of the input: missing is empty, False is "False"."""
    return "" if value is None else str(value)


def brief_rows(name):
    """Three rows of the brief's CSV: two observations, then one with a wrong value."""
    observation = BRIEF_OBSERVATIONS[name]
    first = next(c for c, v in observation.items() if type(v) in (int, float) and c != "Jumps")
    wrong = dict(observation, **{first: "x"})
    other = dict(observation, **{first: observation[first] + 1})
    observations = [observation, other, wrong]
    return [{**ids, **values} for ids, values in zip(BRIEF_IDS[name], observations, strict=True)]


@pytest.mark.parametrize("name", list(BRIEF_COLUMNS))
def test_a_brief_is_scored_under_its_ids_in_its_shape_with_its_answers_columns(
    name, tmp_path, capsys
):
    id_columns, answer_columns = BRIEF_COLUMNS[name]
    rows = brief_rows(name)
    header = list(dict.fromkeys([*id_columns, *BRIEF_OBSERVATIONS[name]]))
    source = write_csv(tmp_path / "in.csv", header, [[as_text(r[c]) for c in header] for r in rows])
    output = tmp_path / "scored.csv"
    with example_server(name, tmp_path) as server:
        code = score_csv.main([server.url, str(source), str(output)])
        contract = server.app.config["MODEL"].contract
        health = requests.get(f"{server.url}/health", timeout=10).json()
        # The same bodies again, one by one: retries, answered as stored.
        answers = [
            requests.post(f"{server.url}{contract.predict_path}", json=body(contract, row))
            for row in rows
        ]
        stored = {p.observation_key: p.observation for p in service.Prediction.select()}

    assert code == 1, capsys.readouterr().err
    assert [a.status_code for a in answers] == [200, 200, 422]
    with open(output, newline="") as file:
        written_header, *written = list(csv.reader(file))
    assert written_header == [*header, *answer_columns, "status", "error"]
    for line, answer in zip(written[:2], answers, strict=False):
        assert line[len(header) : -2] == answer_cells_of(answer.json(), health)
        assert line[-2:] == ["200", ""]
    assert written[2][len(header) : -1] == [""] * len(answer_columns) + ["422"]
    # Stored under the contract's id, in the contract's shape: the row's body is the item.
    key = contract.read_id(body(contract, rows[0]))[0]
    assert json.loads(stored[key]) == body(contract, rows[0])
    assert "2 with " in capsys.readouterr().out


def answer_cells_of(answer, health):
    """What OUTPUT.csv holds of an answer, key by key (an object: entry by entry)."""
    answer_keys = health["contract"]["predict"]["answer"]
    paths = answer_columns(health["model"], answer_keys).paths.values()
    return [as_text(cell(dig(answer, path))) for path in paths]


def body(contract, row):
    """The predict body of a CSV row of the brief, as score_csv.py sends it."""
    ids = {field: row[field] for field in contract.id_fields}
    features = {c: v for c, v in row.items() if c not in ids or c in BRIEF_OBSERVATIONS_COLUMNS}
    if contract.observation_field:
        return {**ids, contract.observation_field: features}
    return {**features, **ids}


BRIEF_OBSERVATIONS_COLUMNS = {"Jumps"}  # the athletes' id column that is a model column


def test_an_id_column_of_another_name_and_an_input_column_named_like_the_answer(tmp_path, capsys):
    observation = BRIEF_OBSERVATIONS["stop_and_search"]
    header = ["search", *observation]
    source = write_csv(tmp_path / "in.csv", header, [["s-1", *map(as_text, observation.values())]])
    taken = write_csv(
        tmp_path / "taken.csv", [*header, "outcome"], [["s-1", *observation.values(), "x"]]
    )
    output = tmp_path / "out.csv"
    with example_server("stop_and_search", tmp_path) as server:
        assert score_csv.main([server.url, str(source), str(output), "--id-column", "search"]) == 0
        [row] = list(service.Prediction.select())
        assert "Scored 1 rows" in capsys.readouterr().out
        message, _ = usage_error(capsys, server.url, source, output)
        assert message.startswith(f"{source} has no column 'observation_id' (its columns: search")
        [first] = read_csv(output)
        # An input column of the answer's name keeps its values; the answer's is renamed.
        assert score_csv.main([server.url, str(taken), str(output), "--id-column", "search"]) == 0
        assert "Scored 1 rows" in capsys.readouterr().out
    assert json.loads(row.observation_key) == "s-1"
    [again] = read_csv(output)
    assert first["outcome"] in ("true", "false")
    assert (again["outcome"], again["answer_outcome"]) == ("x", first["outcome"])
    with example_server("athletes", tmp_path) as server:
        message, _ = usage_error(capsys, server.url, source, output, "--id-column", "search")
    assert message == (
        "--id-column names the column of a one-field id, and this service's id has 2 fields "
        "(athlete, Jumps): name the CSV's columns so."
    )


# --- Rows that get an error ----------------------------------------------------------------


def test_every_row_gets_its_answer_and_errors_exit_1(live, tmp_path):
    low = 10_000
    base = ["3", "male", "30", "0", "0", "8.05", "", "S"]  # Pclass..Embarked, as text
    rows = [
        [low, *base],  # 200
        [low + 1, "2.0", "female", "27", "0", "0", "13", "", "S"],  # 200: 2.0 is an integer
        [low + 2, "1", "female", "", "1", "0", "80", "123", "C"],  # 200: Cabin stays a string
        [low + 3, "first", *base[1:]],  # 422
        ["", *base],  # 422: no id
        ["x" * 201, *base],  # 422: an id too long ("abc" would be a string id)
        [low, *base],  # 200: a retry of the first row
        [low, "1", *base[1:]],  # 409: the first row's id with another passenger
        [low + 4, "3", "male", "30", "", "0", "8.05", "", "S"],  # 422: SibSp is required
        [low + 5, *base],  # 200
    ]
    source = write_csv(tmp_path / "mixed.csv", ["id", *COLUMNS], rows)
    output = tmp_path / "scored.csv"

    result = run_script(live.url, source, output)

    assert result.returncode == 1, result.stderr
    written = read_csv(output)
    assert [row["status"] for row in written] == [
        "200", "200", "200", "422", "422", "422", "200", "409", "422", "200"
    ]  # fmt: skip
    assert [row["id"] for row in written] == [str(row[0]) for row in rows]
    assert written[1]["Pclass"] == "2.0"  # the input text, unchanged
    errors = [row["error"] for row in written]
    assert errors[3] == "observation.Pclass must be an integer, got a string"
    assert errors[4] == "id must be an integer or a non-empty string, got null"
    assert errors[5] == "id must be at most 200 characters long"
    assert errors[7].startswith(f"Observation ID {low} already exists with a different")
    assert errors[8] == "observation.SibSp is required: it cannot be missing, null or NaN"
    assert [bool(row["proba"]) for row in written] == [
        True, True, True, False, False, False, True, True, False, True
    ]  # fmt: skip
    assert written[6]["proba"] == written[0]["proba"]
    assert re.fullmatch(
        r"Scored 10 rows in [\d.]+ s \([\d,]+ rows/s\): 5 with a probability; 5 with an error "
        rf"\(409: 1, 422: 4\): see the error column of {re.escape(str(output))}\.",
        result.stdout.strip(),
    )

    # Stored once each, with values typed by the dtypes /health reports.
    table, count = stored(live.database_url, low, low + 6)
    assert sorted(table) == [low, low + 1, low + 2, low + 5] and count == 4
    cabin = json.loads(table[low + 2][1])["observation"]
    assert cabin == {
        "Pclass": 1, "Sex": "female", "Age": None, "SibSp": 1, "Parch": 0, "Fare": 80.0,
        "Cabin": "123", "Embarked": "C",
    }  # fmt: skip
    # Each probability is the pipeline's own, for that row scored alone.
    for row in (written[0], written[2], written[7]):
        values = dict(zip(COLUMNS, row_values(row), strict=True))
        expected = pipeline_probabilities([values])[0]
        assert abs(float(row["proba"]) - expected) <= 1e-12 * expected


def row_values(row):
    kinds = {"Pclass": int, "SibSp": int, "Parch": int, "Age": float, "Fare": float}
    return [
        None if row[c] == "" else kinds.get(c, str)(float(row[c]) if c in kinds else row[c])
        for c in COLUMNS
    ]


def test_batches_larger_than_the_service_takes_are_split(sqlite_live, tmp_path):
    low = 20_000
    source, _ = passengers_csv(tmp_path / "big.csv", low, 1000, seed=20)
    output = tmp_path / "scored.csv"
    # The server takes at most 400 items a request (SERVER_ENV): 1000 -> 500 -> 250.
    result = run_script(sqlite_live.url, source, output, "--batch-size", 1000)
    check_complete_run(result, output, sqlite_live.database_url, low, 1000)


def test_concurrent_batches_each_get_their_own_database_connection(live, tmp_path):
    """Four batches in flight: a gevent worker serves several at once, each in its own
    transaction on its own connection (on PostgreSQL, a shared one would deadlock)."""
    low, count = 60_000, 6000
    source, _ = passengers_csv(tmp_path / "in.csv", low, count, seed=60)
    output = tmp_path / "scored.csv"
    # A deadlocked worker would hold its requests for GUNICORN_TIMEOUT (30 s): give up sooner.
    limits = ("--timeout", 10, "--retry-for", 10)
    result = run_script(live.url, source, output, "--batch-size", 200, "--connections", 4, *limits)
    check_complete_run(result, output, live.database_url, low, count)
    assert "WORKER TIMEOUT" not in live.server.output()


# --- A database outage in the middle of a run, and an interrupted run ----------------------


class SqliteLock:
    """Another process holding the database's write lock: the service's writes time out."""

    def __init__(self, path):
        self.connection = sqlite3.connect(path, timeout=30, isolation_level=None)

    def __enter__(self):
        self.connection.execute("BEGIN EXCLUSIVE")

    def __exit__(self, *_exc):
        self.connection.execute("ROLLBACK")
        self.connection.close()


def database_outage(live, seconds):
    """Make the database unavailable for `seconds`, then bring it back."""
    if live.postgres is not None:
        live.postgres.stop("fast")  # every session ends, as in a restart or a failover
        time.sleep(seconds)
        live.postgres.start()
        return
    with SqliteLock(live.sqlite_path):
        time.sleep(seconds)


def test_a_database_outage_in_the_middle_is_waited_for(live, tmp_path):
    low, count = 30_000, 6000
    source, _ = passengers_csv(tmp_path / "in.csv", low, count, seed=30)
    output = tmp_path / "scored.csv"
    process = start_script(live.url, source, output, "--batch-size", 200)
    try:
        wait_for_rows(live.database_url, low, low + count, 200, process)
        database_outage(live, seconds=3)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    assert "Retrying for up to 600 s: HTTP 503" in stderr, stderr  # it saw the outage
    assert "The service answers again" in stderr
    check_complete_run(result, output, live.database_url, low, count)


def test_an_interrupted_run_resumes_with_the_stored_answers(live, tmp_path):
    low, count = 40_000, 12_000
    source, _ = passengers_csv(tmp_path / "in.csv", low, count, seed=40)
    output = tmp_path / "scored.csv"
    arguments = (live.url, source, output, "--batch-size", 200, "--connections", 1)
    process = start_script(*arguments)
    workers = gunicorn_workers(live.server)
    try:
        wait_for_rows(live.database_url, low, low + count, 400, process)
        # Ctrl+C while the server is frozen, so that it surely lands in the middle of the run
        # (the script scores thousands of rows a second); the script then stops once the
        # batch it has in flight is answered.
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 130, stderr
    assert "Interrupted" in stderr and "Run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert not output.exists() and not output.with_name("scored.csv.partial").exists()
    before, stored_before = stored(live.database_url, low, low + count)
    assert 400 <= stored_before < count, "the run was not interrupted in the middle"

    result = run_script(*arguments)

    after = check_complete_run(result, output, live.database_url, low, count)
    assert all(after[key] == before[key] for key in before)  # the stored answers, unchanged


# --- The request body limit holds for a chunked body too -----------------------------------


def post_chunked(url, body):
    """POST /predict-batch with Transfer-Encoding: chunked (no Content-Length to check)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    pieces = (body[start : start + 16384] for start in range(0, len(body), 16384))
    # Refused before the whole body was sent: read the answer all the same.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        connection.request("POST", "/predict-batch", body=pieces, encode_chunked=True)
    response = connection.getresponse()
    answer = (response.status, json.loads(response.read()))
    connection.close()
    return answer


def test_a_chunked_batch_is_read_up_to_its_own_limit(sqlite_live):
    observations = [dict(o, Name="x" * 100) for o in random_observations(390, seed=50)]
    items = [{"id": 50_000 + i, "observation": o} for i, o in enumerate(observations)]
    body = json.dumps({"observations": items}).encode()
    assert 64 * 1024 < len(body) < 256 * 1024  # over /predict's limit, under the batch's
    status, answer = post_chunked(sqlite_live.url, body)
    assert status == 200 and len(answer["results"]) == 390
    padded = body + b" " * (256 * 1024)
    assert post_chunked(sqlite_live.url, padded) == (
        413,
        {"error": f"Request body is larger than {256 * 1024} bytes"},
    )


# --- Usage errors: exit 2, one sentence, no traceback, no output ---------------------------


def usage_error(capsys, *arguments, lines=1):
    """Run main() in-process; the sentence it ends with, after checking it ended right."""
    code = score_csv.main([str(argument) for argument in arguments])
    captured = capsys.readouterr()
    printed = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured
    assert "Traceback" not in captured.err and captured.out == ""
    assert printed[-1].startswith("score_csv.py: "), captured.err
    if lines is not None:  # nothing else printed before the run starts
        assert len(printed) <= lines, captured.err
    return printed[-1].removeprefix("score_csv.py: "), captured.err


def test_usage_errors_exit_2_with_one_sentence(sqlite_live, tmp_path, capsys):
    url = sqlite_live.url
    sample = ROOT / "examples" / "passengers.csv"
    output = tmp_path / "out.csv"
    no_ids = write_csv(tmp_path / "no_ids.csv", COLUMNS, [["2", "male", "", "0", "0", "", "", ""]])
    (tmp_path / "empty.csv").write_text("")
    nowhere = f"http://127.0.0.1:{free_port()}"
    expected = {
        (url, no_ids, output): f"{no_ids} has no column 'id' (its columns: Pclass, Sex, Age, "
        "SibSp, Parch, Fare, Cabin, Embarked); name the id column with --id-column.",
        (url, sample, output, "--id-column", "key"): f"{sample} has no column 'key'",
        (url, tmp_path / "missing.csv", output): f"Cannot read {tmp_path / 'missing.csv'} as "
        "CSV (No such file or directory).",
        (url, tmp_path, output): f"Cannot read {tmp_path} as CSV (Is a directory).",
        (url, tmp_path / "empty.csv", output): f"Cannot read {tmp_path / 'empty.csv'} as CSV",
        (url, sample, tmp_path / "no" / "out.csv"): f"Cannot write {tmp_path / 'no' / 'out.csv'}",
        (nowhere, sample, output): f"Cannot reach the service at {nowhere} (cannot connect:",
        (f"{url}/nothing", sample, output): f"{url}/nothing/health answered HTTP 404 without "
        "the model's columns: is this URL the prediction service?",
        ("localhost:5000", sample, output): "The URL must start with http:// or https://",
    }
    for arguments, message in expected.items():
        assert usage_error(capsys, *arguments)[0].startswith(message), arguments
    assert not output.exists()

    # As a user runs it: the same sentence, and no traceback.
    result = run_script(nowhere, sample, output)
    assert result.returncode == 2
    assert result.stderr.startswith(f"score_csv.py: Cannot reach the service at {nowhere}")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


class OldService(BaseHTTPRequestHandler):
    """A service from before /predict-batch: /health without dtypes, no batch route."""

    def do_GET(self):
        if self.path.startswith("/html/"):  # some other web site
            self.send_response(200)
            self.send_header("Content-Length", "13")
            self.end_headers()
            self.wfile.write(b"<html></html>")
            return
        self.answer(200, {"status": "ok", "model": {"columns": COLUMNS, "classes": [0, 1]}})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.answer(404, {"error": f"Not found: {self.path}"})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args):
        pass


def test_a_service_without_the_batch_route_is_a_usage_error(tmp_path, capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), OldService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    sample = ROOT / "examples" / "passengers.csv"
    try:
        message, printed = usage_error(capsys, url, sample, tmp_path / "o.csv", lines=None)
        not_this_service, _ = usage_error(capsys, f"{url}/html", sample, tmp_path / "o.csv")
    finally:
        server.shutdown()
        server.server_close()
    warning = "The service reports no dtypes: numbers are sent as numbers, text as text."
    assert warning in printed
    assert message == (
        f"{url} has no POST /predict-batch: is it this service, deployed from a version that "
        "has it?"
    )
    assert not_this_service == (
        f"{url}/html/health answered HTTP 200 without the model's columns: is this URL the "
        "prediction service?"
    )
    assert not (tmp_path / "o.csv").exists()


SAMPLE = ROOT / "examples" / "passengers.csv"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            [],
            "The service at {url} needs an API key: pass --api-key or set the environment "
            "variable API_KEY to a key of its API_KEYS.",
        ),
        (
            ["--api-key", API_KEY + "0"],
            "The service at {url} refused the API key given (--api-key or API_KEY): HTTP 401: "
            "The API key is not valid.",
        ),
    ],
    ids=["no key", "a wrong key"],
)
def test_a_key_missing_or_refused_is_a_usage_error_that_never_shows_it(
    arguments, message, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("API_KEY", raising=False)
    output = tmp_path / "out.csv"
    with keyed_server(tmp_path) as server:
        said, printed = usage_error(capsys, server.url, SAMPLE, output, *arguments, lines=None)
    assert said == message.format(url=server.url)
    assert API_KEY not in printed and not output.exists()
    assert ("/health", False) in server.keyed
    assert not [path for path, keyed in server.keyed if keyed]


def test_the_api_key_is_read_from_the_environment_and_sent_to_the_batch_route_only(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("API_KEY", API_KEY)
    output = tmp_path / "scored.csv"
    with keyed_server(tmp_path) as server:
        result = run_script(server.url, SAMPLE, output)
        owners = {p.api_key_name for p in service.Prediction.select()}

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Scored 20 rows") and owners == {"smoke"}
    assert {row["status"] for row in read_csv(output)} == {"200"}
    assert API_KEY not in result.stdout + result.stderr
    assert {path for path, keyed in server.keyed if keyed} == {"/predict-batch"}
    assert ("/health", False) in server.keyed
    assert "API_KEY" in run_script("--help").stdout  # the default, documented


def test_a_batch_with_the_key_does_not_follow_a_redirect():
    arguments = ["http://x", "in.csv", "out.csv", "--api-key", API_KEY, "--retry-for", "1"]
    options = score_csv.parse_arguments(arguments)  # a followed redirect fails in 1 s
    with redirecting_server() as (url, keys):
        service = score_csv.Service(url, options)
        try:
            with pytest.raises(score_csv.UsageError, match="refused a batch of 1 rows: HTTP 302"):
                service.score([{"id": 1, "observation": {}}])
        finally:
            service.close()
    assert keys == [API_KEY]  # the redirect was not followed


def test_an_api_key_no_header_can_carry_is_refused_without_showing_it(capsys):
    with pytest.raises(SystemExit) as stopped:
        score_csv.parse_arguments(["http://x", "in.csv", "out.csv", "--api-key", "secret key"])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and "--api-key or API_KEY" in error
    assert "secret" not in error
    arguments = ["http://x", "in.csv", "out.csv", "--api-key", f" {API_KEY}\n"]
    assert score_csv.parse_arguments(arguments).api_key == API_KEY  # a key file's newline


def test_cells_are_parsed_by_the_dtype_the_service_reports():
    integer, number, text, flag = (
        score_csv.converter(name) for name in ("int64", "float64", "str", "bool")
    )
    assert [integer(t) for t in ("3", "", "2.0", "x")] == [3, None, 2.0, "x"]
    assert [number(t) for t in ("3", "", "2.5", "x")] == [3.0, None, 2.5, "x"]
    assert [text(t) for t in ("3", "", "C85")] == ["3", None, "C85"]
    assert [flag(t) for t in ("True", "false", "1", "", "maybe")] == [
        True,
        False,
        True,
        None,
        "maybe",
    ]
    assert type(integer("3")) is int and type(number("3")) is float


def test_an_id_of_either_type_is_sent_as_an_integer_only_when_written_as_one():
    """The service holds 42 and "42" as one id, "042" as another: either way the same ids."""
    either = score_csv.ID_CONVERTERS["integer or string"]
    texts = ["42", "-7", "0", "042", "+42", "4.0", "E12", "-0", str(2**63), ""]
    assert [either(t) for t in texts] == [42, -7, 0, *texts[3:-1], None]
