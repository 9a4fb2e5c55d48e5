"""Shared fixtures: an app on a fresh database, and a real gunicorn server.

The template's own tests run on the tutorial's model, examples/titanic (TITANIC), whatever
sits at the repository root: the root holds the student's model, checked by
tests/test_your_model.py. MODEL_DIR points every app these tests build, and every
LiveServer (it inherits os.environ), at TITANIC unless a test names another folder.

Every test that takes `database_url` runs on SQLite, and again on PostgreSQL when
TEST_DATABASE_URL is set (for example postgresql://postgres@127.0.0.1:5432/test). Under
pytest-xdist (`pytest -n 2`), each worker process uses a database of its own next to that
one (test_gw0, test_gw1...), created when missing: tests drop its table.
"""

import math
import os
import sys
import tempfile
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from live_server import ROOT, LiveServer, free_port  # noqa: F401 (tests import them from here)
from playhouse.db_url import connect

from model_service import scoring
from model_service.monitoring.rollups import TABLES, RollupState

sys.path.insert(0, str(ROOT))

# The tutorial's model: the README's examples, the notebooks and these tests speak of it.
TITANIC = ROOT / "examples" / "titanic"

# `import app` builds the module-level app with the default settings; point its
# database at a throwaway file so that tests never write predictions.db in the repo.
os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/import.db"
os.environ["MODEL_DIR"] = str(TITANIC)
# Settings a student's .env may hold for their own model or traffic (the Makefile exports
# it): the tests set them where they test them.
for name in (
    *("ADMIN_TOKEN", "THRESHOLD", "POSITIVE_CLASS", "TRAFFIC_CSV", "DEMO_TRAFFIC"),
    *("API_KEYS", "API_KEYS_FILE", "API_KEY", "STORE_SECRET", "DATABASE_QUOTA_MB"),
    *("RATE_LIMIT", "TRUSTED_PROXIES", "MAX_QUEUED_PREDICTIONS", "CORS_ORIGINS"),
):
    os.environ.pop(name, None)

import app as service  # noqa: E402
from clients.smoke_check import DEFAULT_OBSERVATION  # noqa: E402


def database_of_this_process(url):
    """TEST_DATABASE_URL, or under pytest-xdist its sibling <name>_<worker>, created if missing.

    Tests drop and fill the table of their database: two worker processes must never share
    one. The worker's URL replaces TEST_DATABASE_URL in the environment, for everyone.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1... (unset without xdist)
    if not url or not worker:
        return url
    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/')}_{worker}"
    connection = psycopg2.connect(url)  # CREATE DATABASE works from any database
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    worker_url = urlunsplit(parts._replace(path=f"/{name}"))
    os.environ["TEST_DATABASE_URL"] = worker_url
    return worker_url


POSTGRES_URL = database_of_this_process(os.environ.get("TEST_DATABASE_URL", ""))
DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])

# Probabilities that cross a machine boundary (artifacts retrained here against the
# committed ones, figures in the README, answers computed by another process) may differ in
# the last digits: linear algebra libraries sum in an order that depends on the processor
# (about 1e-11 relative, measured). Those are compared with this relative tolerance; what
# one process stores and answers again is compared exactly, bit for bit.
ACROSS_MACHINES = 1e-9


def same_probability(a, b):
    return math.isclose(a, b, rel_tol=ACROSS_MACHINES, abs_tol=0.0)


def probabilities(rows, model):
    """P(positive class) of each validated row, through the service's own predict step."""
    return [output["probability"] for output in scoring.predict_outputs(rows, model)]


# The README's example passenger, the one smoke_check.py sends too.
EXAMPLE = DEFAULT_OBSERVATION


def empty_database(url):
    """Drop the tables (the predictions, and their rollups) so that the next app starts on
    an empty database."""
    database = connect(url)
    with database:
        rollups = [table._meta.table_name for table in (*TABLES.values(), RollupState)]
        for table in ("prediction", *rollups, "prediction_rollup"):  # and an earlier release's
            database.execute_sql(f"DROP TABLE IF EXISTS {table}")
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
