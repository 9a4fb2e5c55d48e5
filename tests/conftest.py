"""Shared fixtures: an app on a fresh database, and a real gunicorn server.

Every test that takes `database_url` runs on SQLite, and again on PostgreSQL when
TEST_DATABASE_URL is set (for example postgresql://postgres@127.0.0.1:5432/test).
"""

import os
import sys
import tempfile

import pytest
from live_server import ROOT, LiveServer, free_port  # noqa: F401 (tests import them from here)
from playhouse.db_url import connect

sys.path.insert(0, str(ROOT))

# `import app` builds the module-level app with the default settings; point its
# database at a throwaway file so that tests never write predictions.db in the repo.
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/import.db"
os.environ.pop("MODEL_DIR", None)
os.environ.pop("ADMIN_TOKEN", None)

import app as service  # noqa: E402
from smoke_check import DEFAULT_OBSERVATION  # noqa: E402

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")
DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])

# The README's example passenger, the one smoke_check.py sends too.
EXAMPLE = DEFAULT_OBSERVATION


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
