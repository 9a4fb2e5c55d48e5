"""Shared fixtures: an app on a fresh database, and a real gunicorn server.

Every test that takes `database_url` runs on SQLite, and again on PostgreSQL when
TEST_DATABASE_URL is set (for example postgresql://postgres@127.0.0.1:5432/test).
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from playhouse.db_url import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# `import app` builds the module-level app with the default settings; point its
# database at a throwaway file so that tests never write predictions.db in the repo.
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/import.db"
os.environ.pop("MODEL_DIR", None)
os.environ.pop("ADMIN_TOKEN", None)

import app as service  # noqa: E402

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")
DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])

EXAMPLE = {
    "Pclass": 2,
    "Sex": "female",
    "Age": 27.0,
    "SibSp": 0,
    "Parch": 0,
    "Fare": 13.0,
    "Cabin": None,
    "Embarked": "S",
}


def empty_database(url):
    """Drop the table so that the next app starts on an empty database."""
    database = connect(url)
    with database:
        database.execute_sql("DROP TABLE IF EXISTS prediction")
    return url


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'predictions.db'}"
    return empty_database(POSTGRES_URL)


@pytest.fixture
def app(database_url):
    return service.create_app({"DATABASE_URL": database_url, "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def example():
    return dict(EXAMPLE)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """gunicorn running app:app in a subprocess, as `make run` and the Dockerfile run it."""

    def __init__(self, database_url, workers=2, env=None, cwd=ROOT, python=sys.executable):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The log outlives this method: stop() closes it.
        self.log = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            **(env or {}),
        }
        gunicorn = [python, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"]
        self.process = subprocess.Popen(
            gunicorn, cwd=cwd, env=environment, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_until_ready(self, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.process.returncode}:\n{self.output()}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer /health in {seconds} s:\n{self.output()}")

    def output(self):
        return Path(self.log.name).read_text(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def start_server():
    """Call start_server(database_url, workers=2, env={...}); stopped after the test."""
    servers = []

    def start(database_url, **options):
        server = LiveServer(database_url, **options)
        servers.append(server)
        return server.wait_until_ready()

    yield start
    for server in servers:
        server.stop()
