"""migrations.upgrade: from the released schemas to the current model, losing nothing.

The databases it starts from are files of tests/fixtures/, made once by the released
services themselves (make_released_databases.py says how): for each release a SQLite file,
copied for each test, and a PostgreSQL dump, loaded into the test database. No test needs
git or this repository's history: a copy without .git runs them all.
"""

import json
import multiprocessing
import shutil
import sqlite3
import time
from contextlib import closing
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import peewee
import psycopg2
import pytest
from conftest import DATABASES, EXAMPLE, POSTGRES_URL, ROOT, empty_database, service
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
from sklearn.datasets import load_diabetes, load_wine

from model_service import migrations
from model_service.database import open_database as open_service_database
from model_service.tasks import true_class_of

FIXTURES = Path(__file__).parent / "fixtures"

NEW_MODEL = service.Prediction  # the model of this release
NEW_COLUMNS = [f.column_name for f in NEW_MODEL._meta.sorted_fields]


def added_columns(released):
    """The columns the model has and a released table lacks, in the model's order."""
    return [name for name in NEW_COLUMNS if name not in released]


# The tutorial's release (commit 205f28a): its table, and what it stored. It was sent 40
# passengers with the ids IDS, and labelled every third one (in true_class).
TUTORIAL = "205f28a"
OLD_COLUMNS = ["id", "observation_id", "observation", "proba", "true_class", "created_at"]
IDS = [-(2**63), 2**63 - 1, *range(1, 39)]
UPGRADE_OF_THE_RELEASE = [
    *(f"added the column prediction.{name}" for name in added_columns(OLD_COLUMNS)),
    "dropped NOT NULL on prediction.observation_id",
    "dropped NOT NULL on prediction.proba",
    "copied 40 ids from prediction.observation_id to prediction.observation_key",
    "copied 14 labels from prediction.true_class to prediction.true_value",
]

# The first release for any task (commit 9e1dc3c): its /update wrote true_value alone.
ANY_TASK = "9e1dc3c"
ANY_TASK_COLUMNS = [
    "id",
    "observation_key",
    "observation_id",
    "observation",
    "model_version",
    "prediction",
    "proba",
    "threshold",
    "positive_class",
    "true_value",
    "true_class",
    "created_at",
]
# The true_class of each row it labelled, once upgraded: the integer and boolean labels of
# its classifiers (Titanic 1..4, one corrected to 0; the stop-and-search brief's outcomes;
# integer classes 100..102, of which 3000000000 does not fit 32 bits). The wine
# classifier's string labels (200, 201) and the diabetes regressor's numbers (300..302,
# 3.0 and 0.0 among them) keep true_class NULL, as every unlabelled row does.
TRUE_CLASSES = {
    "1": 0,
    "2": 0,
    "3": 1,
    "4": 0,
    '"2022-005601"': 0,
    '"2022-005602"': 1,
    '"2022-005603"': 0,
    '"2022-005604"': 1,
    "100": 1,
    "101": 2,
}
UPGRADE_OF_THE_ANY_TASK_RELEASE = [
    *(f"added the column prediction.{name}" for name in added_columns(ANY_TASK_COLUMNS)),
    "copied 10 labels from prediction.true_value to prediction.true_class",
]
UPGRADES = {TUTORIAL: UPGRADE_OF_THE_RELEASE, ANY_TASK: UPGRADE_OF_THE_ANY_TASK_RELEASE}
# Each release's columns, and those whose every value the upgrade keeps as it was.
RELEASED_COLUMNS = {TUTORIAL: OLD_COLUMNS, ANY_TASK: ANY_TASK_COLUMNS}
KEPT_COLUMNS = {TUTORIAL: OLD_COLUMNS, ANY_TASK: [c for c in ANY_TASK_COLUMNS if c != "true_class"]}


def upgraded_columns(release):
    """The columns of the release's table once upgraded: the new ones come last."""
    return RELEASED_COLUMNS[release] + added_columns(RELEASED_COLUMNS[release])


# The lines of a pg_dump file that set up its session (settings, an empty search_path: the
# dump names public.prediction) or that only psql understands (\restrict): left out, the
# dump loads on any server version, and no connection keeps a setting of it. (No line of
# the rows' text in these dumps starts so; their multi-line JSON lines start with spaces.)
SESSION_STATEMENT = ("SET ", "SELECT pg_catalog.set_config(", "\\")


def load_dump(url, dump):
    """Run the statements of a pg_dump --inserts file in one transaction (no psql needed)."""
    lines = dump.read_text(encoding="utf-8").splitlines()
    statements = "\n".join(line for line in lines if not line.startswith(SESSION_STATEMENT))
    with closing(psycopg2.connect(url)) as connection, connection.cursor() as cursor:
        cursor.execute(statements)
        connection.commit()


def released_database(release, kind, folder):
    """The URL of a fresh copy of the database the release filled (tests/fixtures/)."""
    if kind == "postgresql":
        load_dump(empty_database(POSTGRES_URL), FIXTURES / f"release_{release}.sql")
        return POSTGRES_URL
    copy = folder / "predictions.db"
    shutil.copyfile(FIXTURES / f"release_{release}.db", copy)
    return f"sqlite:///{copy}"


@pytest.fixture(params=DATABASES)
def released_url(request, tmp_path):
    """A database filled by the tutorial's release."""
    return released_database(TUTORIAL, request.param, tmp_path)


@pytest.fixture(params=DATABASES)
def any_task_url(request, tmp_path):
    """A database filled by the first release for any task."""
    return released_database(ANY_TASK, request.param, tmp_path)


@pytest.fixture(params=[(r, d) for r in (TUTORIAL, ANY_TASK) for d in DATABASES], ids="-".join)
def release_and_url(request, tmp_path):
    """(release, a database it filled), for each release and each database."""
    release, kind = request.param
    return release, released_database(release, kind, tmp_path)


def open_database(url):
    """The database as the service opens it (pooled), with NEW_MODEL bound to it."""
    database = open_service_database(url, timeout=5)
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


def old_rows(database, columns=OLD_COLUMNS):
    """Every row in the given columns, exactly (floats as their float.hex)."""
    rows = database.execute_sql(f"SELECT {', '.join(columns)} FROM prediction ORDER BY id")
    return [tuple(v.hex() if isinstance(v, float) else v for v in row) for row in rows]


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
    assert [row[1] for row in before] == IDS
    labels = {row[1]: row[4] for row in before if row[4] is not None}
    assert len(labels) == 14  # every third row, labelled by the released /update

    assert migrations.upgrade(database, NEW_MODEL) == UPGRADE_OF_THE_RELEASE
    assert column_names(database) == upgraded_columns(TUTORIAL)
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


def test_upgrade_gives_the_any_task_releases_classifier_labels_their_true_class(
    any_task_url, connect_to
):
    database = connect_to(any_task_url)
    # A regressor's integer label (JSON 3, as a brief's own field may send it) stays out too:
    # the rows tell a classifier by what it stored, not by the label.
    database.execute_sql("UPDATE prediction SET true_value = '3' WHERE observation_key = '300'")
    before = old_rows(database, KEPT_COLUMNS[ANY_TASK])
    assert len(before) == 27
    labelled = NEW_MODEL.true_class.is_null(False)
    assert not NEW_MODEL.select(NEW_MODEL.id).where(labelled).exists()  # the release's bug

    assert migrations.upgrade(database, NEW_MODEL) == UPGRADE_OF_THE_ANY_TASK_RELEASE
    assert column_names(database) == upgraded_columns(ANY_TASK)
    assert old_rows(database, KEPT_COLUMNS[ANY_TASK]) == before
    filled = NEW_MODEL.select().where(labelled)
    assert {row.observation_key: row.true_class for row in filled} == TRUE_CLASSES
    assert migrations.upgrade(database, NEW_MODEL) == []


# /update on an example model: (its /predict route, its /update route, the id's field, the
# label's field, the labels sent one after the other, the true_class stored after each).
UPDATES = {
    "titanic": ("/predict", "/update", "id", "true_class", [1, 0], [1, 0]),  # then corrected
    "stop_and_search": (
        "/should_search/",
        "/search_result/",
        "observation_id",
        "outcome",
        [True, False],
        [1, 0],
    ),
    "wine": ("/predict", "/update", "id", "true_class", ["class_1"], [None]),  # strings
    "diabetes": ("/predict", "/update", "id", "true_value", [3], [None]),  # a regressor's 3
}


def predict_body(name):
    """A /predict body for the example model `name`: the tutorial's passenger, a data row."""
    if name == "titanic":
        return {"id": 7, "observation": EXAMPLE}
    if name == "stop_and_search":  # the brief's body: its string id beside the features
        search = pd.read_csv(ROOT / "examples" / name / "traffic.csv", nrows=1)
        return records(search.drop(columns="outcome"))[0]
    data = (
        load_wine(as_frame=True) if name == "wine" else load_diabetes(as_frame=True, scaled=False)
    )
    return {"id": 7, "observation": records(data.data.head(1))[0]}


def records(frame):
    return json.loads(frame.to_json(orient="records"))  # plain JSON values, NaN as null


@pytest.mark.parametrize("name", UPDATES)
def test_update_writes_the_tutorials_true_class_beside_true_value(database_url, name):
    predict_path, update_path, id_field, truth_field, labels, true_classes = UPDATES[name]
    settings = {"DATABASE_URL": database_url, "MODEL_DIR": str(ROOT / "examples" / name)}
    client = service.create_app({**settings, "TESTING": True}).test_client()
    body = predict_body(name)
    answer = client.post(predict_path, json=body)
    assert answer.status_code == 200, answer.json
    for label, true_class in zip(labels, true_classes, strict=True):
        update = {id_field: body[id_field], truth_field: label}
        assert client.post(update_path, json=update).status_code == 200
        row = NEW_MODEL.get()  # the only row
        assert (json.loads(row.true_value), row.true_class) == (label, true_class)
    if name == "titanic":  # the tutorial's other columns, as it wrote them
        assert (row.observation_id, row.proba) == (7, answer.json["proba"])


@pytest.mark.parametrize(
    "label, true_class",
    [
        (0, 0),
        (True, 1),
        (False, 0),
        (2**31 - 1, 2**31 - 1),
        (-(2**31), -(2**31)),
        (2**31, None),  # beyond PostgreSQL's INTEGER
        (-(2**31) - 1, None),
        (1.0, None),
        ("1", None),
    ],
)
def test_the_true_class_of_a_label_is_an_integer_of_32_bits(label, true_class):
    found = true_class_of(label)
    assert (found, type(found)) == (true_class, type(true_class))


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


def test_two_processes_upgrading_at_once_take_turns(release_and_url, connect_to):
    release, url = release_and_url
    database = connect_to(url)
    before = old_rows(database, KEPT_COLUMNS[release])
    database.close_all()  # forked children must not share this process's connections

    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    children = [
        context.Process(target=upgrade_slowly, args=(url, barrier, results)) for _ in range(2)
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
    assert sorted(outcomes, key=len) == [[], UPGRADES[release]]
    assert column_names(database) == upgraded_columns(release)
    assert old_rows(database, KEPT_COLUMNS[release]) == before


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
        database = open_service_database(f"{url}?options={options}", timeout=5)
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
    release_and_url, connect_to, connect_read_only
):
    release, url = release_and_url
    before = snapshot(connect_to(url))
    with pytest.raises(migrations.MigrationError, match="the database is read-only"):
        migrations.upgrade(connect_read_only(url), NEW_MODEL)
    assert snapshot(connect_to(url)) == before

    # Once upgraded, the database is current: a read-only replica of it starts.
    assert migrations.upgrade(connect_to(url), NEW_MODEL) == UPGRADES[release]
    assert migrations.upgrade(connect_read_only(url), NEW_MODEL) == []


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


def test_a_failure_after_the_labels_were_filled_changes_nothing(
    any_task_url, connect_to, monkeypatch
):
    database = connect_to(any_task_url)
    before = snapshot(database)
    fill_true_classes = migrations.fill_true_classes

    def fill_then_fail(model, table):  # the same transaction as the columns added
        assert fill_true_classes(model, table) == UPGRADE_OF_THE_ANY_TASK_RELEASE[-1:]
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(migrations, "fill_true_classes", fill_then_fail)
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
