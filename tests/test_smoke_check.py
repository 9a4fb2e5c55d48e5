"""smoke_check.py, run as a student runs it, against live local servers."""

import ast
import io
import json
import socket
import subprocess
import sys
import tempfile

import pytest
from conftest import EXAMPLE, ROOT, LiveServer, free_port
from playhouse.db_url import connect
from test_tutorial import TutorialServer

import smoke_check

SCRIPT = str(ROOT / "smoke_check.py")


def smoke(*arguments):
    """python smoke_check.py <arguments> -> (exit code, what it printed)."""
    result = subprocess.run(
        [sys.executable, SCRIPT, *arguments], capture_output=True, text=True, timeout=120
    )
    return result.returncode, result.stdout + result.stderr


def lines_starting(output, word):
    return [line for line in output.splitlines() if line.startswith(word)]


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


@pytest.mark.slow
def test_a_healthy_service_passes_every_check(start_server, database_url):
    server = start_server(database_url, workers=2)

    code, output = smoke(server.url)

    assert code == 0, output
    assert len(lines_starting(output, "PASS")) == len(smoke_check.CHECKS), output
    assert not lines_starting(output, "FAIL") and not lines_starting(output, "WARN")
    assert f"{len(smoke_check.CHECKS)} of {len(smoke_check.CHECKS)} checks passed" in output
    # What it leaves in the database: one prediction, under a big id, labelled.
    database = connect(database_url)
    with database:
        rows = database.execute_sql("SELECT observation_id, true_class FROM prediction").fetchall()
    assert len(rows) == 1
    assert rows[0][0] >= 10**12 and rows[0][1] == 1


@pytest.mark.slow
def test_an_observation_for_another_model_says_which_columns_to_send(shared_server):
    code, output = smoke(shared_server.url, "--observation", '{"petal_length": 1.4}')

    assert code == 1
    assert f"FAIL  {smoke_check.FITS}" in output
    assert "it lacks ['Pclass', 'Sex', 'Age'" in output
    assert "--observation" in output.split(f"FAIL  {smoke_check.FITS}")[1]
    assert len(lines_starting(output, "SKIP")) == 4  # the checks that need a prediction
    assert f"PASS  {smoke_check.UNKNOWN}" in output


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
    server = TutorialServer("tutorial/step1_always_half.py")
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
    assert smoke_check.wrongly_typed_copy({"Sex": "male"}) is None


def test_fresh_ids_are_far_above_typical_ids():
    ids = {smoke_check.fresh_id() for _ in range(100)}
    assert all(10**12 <= i < 2**62 for i in ids) and len(ids) == 100


def test_it_needs_only_the_standard_library():
    """A student runs it with any Python, without the project's requirements."""
    tree = ast.parse((ROOT / "smoke_check.py").read_text())
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
