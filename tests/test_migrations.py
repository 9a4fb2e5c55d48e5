"""migrations.upgrade: from the released schema to the current model, losing nothing.

The released service itself (commit RELEASE, extracted with `git archive`) fills the
databases the upgrade starts from: once per module, in one subprocess, a SQLite file and,
with TEST_DATABASE_URL, a PostgreSQL database that each test gets a fresh copy of.
"""

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import datetime
from urllib.parse import quote, urlsplit, urlunsplit

import peewee
import psycopg2
import pytest
from conftest import DATABASES, EXAMPLE, POSTGRES_URL, ROOT, service
from peewee import (
    BigAutoField,
    BigIntegerField,
    DateTimeField,
    DoubleField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.pool import PooledSqliteDatabase

import migrations

RELEASE = "205f28a"  # the released service, with the table of OLD_COLUMNS
OLD_COLUMNS = ["id", "observation_id", "observation", "proba", "true_class", "created_at"]


NEW_MODEL = service.Prediction  # the model of this release
NEW_COLUMNS = [f.column_name for f in NEW_MODEL._meta.sorted_fields]
ADDED_COLUMNS = [name for name in NEW_COLUMNS if name not in OLD_COLUMNS]

# What upgrade answers on a database of the released service (which labelled 14 rows).
UPGRADE_OF_THE_RELEASE = [
    *(f"added the column prediction.{name}" for name in ADDED_COLUMNS),
    "dropped NOT NULL on prediction.observation_id",
    "dropped NOT NULL on prediction.proba",
    "copied 40 ids from prediction.observation_id to prediction.observation_key",
    "copied 14 labels from prediction.true_class to prediction.true_value",
]

# What the released service is sent: the extremes of a 64-bit id, and ids in between.
IDS = [-(2**63), 2**63 - 1, *range(1, 39)]

# Run by the released code in its own folder. It stores one prediction per id (bodies
# written in several styles: the stored text must survive as sent), then labels every third.
FILL_SCRIPT = """
import json, sys
import app as released  # DATABASE_URL is the SQLite file

ids, example, postgres_url = json.loads(sys.argv[1])

def fill(client):
    for n, observation_id in enumerate(ids):
        observation = {**example, "Age": None if n % 5 == 0 else 0.5 + n, "Fare": 7.1 * n,
                       "Sex": ["female", "male"][n % 2], "note": "été ✓\\n" * (n % 3)}
        body = json.dumps({"id": observation_id, "observation": observation},
                          ensure_ascii=n % 2 == 0, indent=n % 4 or None)
        response = client.post("/predict", data=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        if n % 3 == 0:
            label = {"id": observation_id, "true_class": n % 2}
            assert client.post("/update", json=label).status_code == 200

fill(released.app.test_client())
released.database.close_all()  # checkpoints SQLite's WAL into the file
if postgres_url:
    fill(released.create_app({"DATABASE_URL": postgres_url}).test_client())
    released.database.close_all()
"""


def postgres_url(suffix):
    """The URL of the database <TEST_DATABASE_URL's name>_<suffix>, on the same server."""
    parts = urlsplit(POSTGRES_URL)
    return urlunsplit(parts._replace(path=f"{parts.path}_{suffix}"))


def on_postgres_server(*statements):
    with closing(psycopg2.connect(POSTGRES_URL)) as connection:
        connection.autocommit = True  # CREATE and DROP DATABASE refuse a transaction
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)


def database_name(url):
    return urlsplit(url).path[1:]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """{"sqlite": file, "postgresql": URL}: databases filled by the released service."""
    folder = tmp_path_factory.mktemp("released")
    tree = folder / "tree"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", RELEASE], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    databases = {"sqlite": folder / "released.db", "postgresql": ""}
    if POSTGRES_URL:
        databases["postgresql"] = postgres_url("released")
        name = database_name(databases["postgresql"])
        on_postgres_server(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"')
    filled = subprocess.run(
        [sys.executable, "-c", FILL_SCRIPT, json.dumps([IDS, EXAMPLE, databases["postgresql"]])],
        cwd=tree,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{databases['sqlite']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert filled.returncode == 0, filled.stderr
    yield databases
    if POSTGRES_URL:
        on_postgres_server(
            *(
                f'DROP DATABASE IF EXISTS "{database_name(postgres_url(suffix))}" WITH (FORCE)'
                for suffix in ("released", "copy")
            )
        )


@pytest.fixture(params=DATABASES)
def released_url(request, released, tmp_path):
    """A fresh copy of a database filled by the released service."""
    if request.param == "postgresql":
        url = postgres_url("copy")
        on_postgres_server(
            f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)',
            f'CREATE DATABASE "{database_name(url)}" '
            f'TEMPLATE "{database_name(released["postgresql"])}"',
        )
        return url
    copy = tmp_path / "predictions.db"
    source, target = sqlite3.connect(released["sqlite"]), sqlite3.connect(copy)
    with closing(source), closing(target):
        source.backup(target)  # a consistent copy, whatever the WAL still holds
    return f"sqlite:///{copy}"


def open_database(url):
    """The database as the service opens it (pooled), with NEW_MODEL bound to it."""
    database = service.open_database(url, timeout=5)
    NEW_MODEL._meta.database.initialize(database)
    return database


@pytest.fixture
def connect_to():
    """connect_to(url) -> an open database; every connection is closed after the test."""
    opened = []

    def connect(url):
        opened.append(open_database(url))
        return opened[-1]

    yield connect
    for database in opened:
        database.close_all()


def old_rows(database):
    """Every row in the columns of the released schema, exactly (proba as its float.hex)."""
    query = f"SELECT {', '.join(OLD_COLUMNS)} FROM prediction ORDER BY id"
    rows = database.execute_sql(query).fetchall()
    return [(*row[:3], row[3].hex(), *row[4:]) for row in rows]


def snapshot(database):
    """All that upgrade could change: the columns, the indexes and every value."""
    columns = database.get_columns("prediction")
    indexes = sorted(database.get_indexes("prediction"))
    rows = database.execute_sql("SELECT * FROM prediction ORDER BY id").fetchall()
    return columns, indexes, rows


def column_names(database):
    return [column.name for column in database.get_columns("prediction")]


def test_upgrade_keeps_every_row_the_released_service_stored(released_url, connect_to):
    database = connect_to(released_url)
    before = old_rows(database)
    assert len(before) == len(IDS)
    labels = {row[1]: row[4] for row in before if row[4] is not None}
    assert len(labels) == 14  # every third row, labelled by the released /update

    assert migrations.upgrade(database, NEW_MODEL) == UPGRADE_OF_THE_RELEASE
    assert column_names(database) == OLD_COLUMNS + ADDED_COLUMNS
    assert old_rows(database) == before
    for row in NEW_MODEL.select():
        assert row.observation_key == str(row.observation_id)  # the key of an integer id
        assert row.true_value == (
            json.dumps(labels[row.observation_id]) if row.true_class is not None else None
        )
        assert (row.model_version, row.prediction, row.threshold, row.positive_class) == (None,) * 4

    # What the next release writes: no proba for a regressor; the unique id still holds.
    new = dict(
        observation="{}", prediction="3.5", model_version="v2", created_at=datetime(2030, 1, 1)
    )
    stored = NEW_MODEL.create(observation_key=str(10**15), observation_id=None, proba=None, **new)
    assert NEW_MODEL.get_by_id(stored.id).proba is None
    assert stored.id > before[-1][0]
    with pytest.raises(peewee.IntegrityError), database.atomic():
        NEW_MODEL.create(observation_key=str(10**16), observation_id=IDS[0], **new)
    with pytest.raises(peewee.IntegrityError), database.atomic():
        NEW_MODEL.create(observation_key=str(IDS[0]), observation_id=None, **new)

    assert migrations.upgrade(database, NEW_MODEL) == []


def upgrade_slowly(url, barrier, results):
    """In a child process: upgrade when the other child does, 0.3 s slower than needed.

    The pause comes once the lock is held, so the other child really arrives meanwhile.
    """
    upgrade_table = migrations.upgrade_table

    def slow_upgrade_table(*arguments):
        time.sleep(0.3)
        return upgrade_table(*arguments)

    migrations.upgrade_table = slow_upgrade_table  # this child's copy of the module only
    database = open_database(url)
    barrier.wait()
    try:
        results.put(migrations.upgrade(database, NEW_MODEL))
    except Exception as error:
        results.put(repr(error))


def test_two_processes_upgrading_at_once_take_turns(released_url, connect_to):
    database = connect_to(released_url)
    before = old_rows(database)
    database.close_all()  # forked children must not share this process's connections

    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=upgrade_slowly, args=(released_url, barrier, results))
        for _ in range(2)
    ]
    for child in children:
        child.start()
    try:
        outcomes = [results.get(timeout=30) for _ in children]
    finally:
        for child in children:
            child.join(timeout=5)
            child.kill()  # only if it hangs: it has answered, or failed to within 30 s

    # The first did the upgrade; the second waited for it, then found nothing to do.
    assert sorted(outcomes, key=len) == [[], UPGRADE_OF_THE_RELEASE]
    assert column_names(database) == OLD_COLUMNS + ADDED_COLUMNS
    assert old_rows(database) == before


def released_schema(database, **changed_fields):
    """The released table, built here (with changed_fields replaced or added), with 2 rows."""
    fields = {
        "id": BigAutoField(),
        "observation_id": BigIntegerField(unique=True),
        "observation": TextField(),
        "proba": DoubleField(),
        "true_class": IntegerField(null=True),
        "created_at": DateTimeField(),
        **changed_fields,
    }
    meta = type("Meta", (), {"database": database, "table_name": "prediction"})
    model = type("ReleasedPrediction", (Model,), {**fields, "Meta": meta})
    database.create_tables([model])
    row = {"observation": "{}", "created_at": datetime(2025, 1, 1, 12, 0, 0, 123456)}
    model.insert_many(
        [
            {**row, "observation_id": 1, "proba": 0.1, "true_class": 1},
            {**row, "observation_id": 2, "proba": 0.2, "true_class": None},
        ]
    ).execute()


@pytest.mark.parametrize(
    "column, wrong_field",
    [("observation_id", TextField), ("proba", TextField), ("model_version", IntegerField)],
)
def test_a_column_of_the_wrong_type_is_refused(database_url, connect_to, column, wrong_field):
    database = connect_to(database_url)
    released_schema(database, **{column: wrong_field(null=True)})
    before = snapshot(database)

    message = f"The table prediction cannot be upgraded: its column {column} is "
    with pytest.raises(migrations.MigrationError, match=message):
        migrations.upgrade(database, NEW_MODEL)
    assert snapshot(database) == before


def open_read_only(url):
    """The same database, through a connection that cannot write, with NEW_MODEL bound."""
    if url.startswith("sqlite"):
        # mode=ro: how SQLite opens a file it may not write. (chmod cannot show it here: the
        # tests may run as root, who writes anyway.)
        path = url.split(":///", 1)[1]
        database = PooledSqliteDatabase(f"file:{path}?mode=ro", uri=True, max_connections=2)
    else:  # as on a standby, or with a role whose transactions are read-only by default
        options = quote("-c default_transaction_read_only=on")
        database = service.open_database(f"{url}?options={options}", timeout=5)
    NEW_MODEL._meta.database.initialize(database)
    return database


@pytest.fixture
def connect_read_only():
    """Like connect_to, through connections that cannot write."""
    opened = []

    def connect(url):
        opened.append(open_read_only(url))
        return opened[-1]

    yield connect
    for database in opened:
        database.close_all()


def test_a_read_only_database_is_refused_and_left_as_it_was(
    released_url, connect_to, connect_read_only
):
    before = snapshot(connect_to(released_url))
    with pytest.raises(migrations.MigrationError, match="the database is read-only"):
        migrations.upgrade(connect_read_only(released_url), NEW_MODEL)
    assert snapshot(connect_to(released_url)) == before

    # Once upgraded, the database is current: a read-only replica of it starts.
    assert migrations.upgrade(connect_to(released_url), NEW_MODEL) == UPGRADE_OF_THE_RELEASE
    assert migrations.upgrade(connect_read_only(released_url), NEW_MODEL) == []


def test_a_failure_half_way_changes_nothing(database_url, connect_to, monkeypatch):
    database = connect_to(database_url)
    released_schema(database)
    before = snapshot(database)

    def fail(model, table):  # after the columns were added and NOT NULL dropped
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(migrations, "copy_legacy_labels", fail)
    with pytest.raises(RuntimeError, match="the disk is full"):
        migrations.upgrade(database, NEW_MODEL)
    assert snapshot(database) == before


@pytest.mark.skipif(
    sqlite3.sqlite_version_info >= (3, 53), reason="SQLite 3.53 drops NOT NULL in place"
)
@pytest.mark.parametrize(
    "dependent, created_by",
    [
        ("the view labelled", ["CREATE VIEW labelled AS SELECT * FROM prediction"]),
        (
            "the trigger stamp",
            ["CREATE TRIGGER stamp AFTER INSERT ON prediction BEGIN SELECT 1; END"],
        ),
        (
            "the table feedback",
            [
                "CREATE TABLE feedback (prediction_id INTEGER REFERENCES prediction (id) "
                "ON DELETE CASCADE)",
                "INSERT INTO feedback VALUES (1)",
                "PRAGMA foreign_keys = ON",
            ],
        ),
    ],
)
def test_sqlite_refuses_a_rebuild_that_would_break_what_depends_on_the_table(
    tmp_path, connect_to, dependent, created_by
):
    database = connect_to(f"sqlite:///{tmp_path / 'predictions.db'}")
    released_schema(database)
    for statement in created_by:
        database.execute_sql(statement)
    before = snapshot(database), database.execute_sql("SELECT * FROM sqlite_master").fetchall()

    with pytest.raises(migrations.MigrationError, match=f"would break {dependent};"):
        migrations.upgrade(database, NEW_MODEL)
    after = snapshot(database), database.execute_sql("SELECT * FROM sqlite_master").fetchall()
    assert after == before


def test_a_fresh_database_gets_the_table_with_every_column(database_url, connect_to):
    database = connect_to(database_url)
    assert migrations.upgrade(database, NEW_MODEL) == ["created the table prediction"]

    columns = [(column.name, column.null) for column in database.get_columns("prediction")]
    assert columns == [(field.column_name, field.null) for field in NEW_MODEL._meta.sorted_fields]
    indexes = [(index.columns, index.unique) for index in database.get_indexes("prediction")]
    assert (["observation_id"], True) in indexes
    assert migrations.upgrade(database, NEW_MODEL) == []
