"""Bring the prediction table up to the schema of the model, at start-up.

    changes = upgrade(database, Prediction)  # [] when the table is already current

A missing table is created. A table written by an earlier release gets the columns the
model has and the table lacks (all nullable), loses NOT NULL where the model allows null
(proba), and has its labels copied: true_value = the JSON of true_class on rows of the
releases before any task, and true_class = a classifier's integer or boolean label on rows
that the first release for any task labelled in true_value alone. No other value of any row
changes, and rows stored before the upgrade keep model_version NULL.

It all happens in one transaction (SQLite and PostgreSQL both roll back DDL), so a failure
changes nothing. Processes that start at the same moment take turns: the second one waits
for the first to commit, then finds the table current. A column of the wrong type or a
read-only database stops the upgrade with a MigrationError that says what to do.
"""

import json
from contextlib import contextmanager

import peewee
from peewee import fn
from playhouse.migrate import SchemaMigrator, migrate
from psycopg2.errorcodes import READ_ONLY_SQL_TRANSACTION

from model_service.tasks import true_class_of

# The PostgreSQL advisory lock key that releases before this one took to create the table:
# during a rolling deploy, an old replica starting takes turns with this upgrade.
LOCK_KEY = 7_402_118

# The type names peewee's fields and the two databases use, by the kind of value they hold.
# A column is the right type when its family is the field's: INTEGER and BIGINT are both
# integers (SQLite declares every integer column INTEGER, PostgreSQL says bigint).
TYPE_FAMILIES = {
    "integer": {"INT", "INTEGER", "BIGINT", "SMALLINT", "AUTO", "BIGAUTO"},
    "real": {"REAL", "DOUBLE", "FLOAT"},  # "double precision" on PostgreSQL
    "text": {"TEXT", "VARCHAR", "CHAR", "CHARACTER"},  # "character varying"
    "datetime": {"DATETIME", "TIMESTAMP"},  # "timestamp without time zone"
}


class MigrationError(Exception):
    """The table cannot be brought to the model's schema; the message says what to do."""


def upgrade(database, model):
    """Create or upgrade model's table in one transaction; return the changes made.

    database: a peewee Database (pooled or not), or a DatabaseProxy initialized to one;
    model: the peewee model, bound to that database (directly or through the proxy).
    """
    if isinstance(database, peewee.Proxy):
        database = database.obj
    table = model._meta.table_name
    try:
        with exclusive_transaction(database):
            # Only now, holding the lock, is what another process may have done visible.
            if not database.table_exists(table):
                database.create_tables([model])
                return [f"created the table {table}"]
            return upgrade_table(database, model, table)
    except (peewee.OperationalError, peewee.InternalError) as error:
        if not is_read_only(error):
            raise
        reason = str(error).strip()
        raise MigrationError(
            f"The table {table} cannot be upgraded: the database is read-only ({reason}); "
            "start this release once with write access to the database."
        ) from None


@contextmanager
def exclusive_transaction(database):
    """A transaction that a second process, starting at the same moment, waits for."""
    if isinstance(database, peewee.PostgresqlDatabase):
        # READ COMMITTED (the default, made explicit): every statement sees what was
        # committed before it started, so the columns read after the lock are up to date.
        with database.atomic(isolation_level="READ COMMITTED"):
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            yield
    else:
        # BEGIN IMMEDIATE takes SQLite's write lock at once: a second process waits for it
        # (busy_timeout) and reads the columns only once the first has committed.
        with database.atomic("IMMEDIATE"):
            yield


def upgrade_table(database, model, table):
    """Add the missing columns, then drop NOT NULL where the model allows null."""
    columns = {column.name: column for column in database.get_columns(table)}
    check_columns(model, table, columns)  # before any change: refuse, or do it all
    fields = model._meta.sorted_fields
    missing = [field.column_name for field in fields if field.column_name not in columns]
    nullable = [
        field.column_name
        for field in fields
        if field.null and field.column_name in columns and not columns[field.column_name].null
    ]
    if nullable and isinstance(database, peewee.SqliteDatabase):
        check_sqlite_rebuild(database, table)
    migrator = SchemaMigrator.from_database(database)
    migrate(
        *(migrator.add_column(table, name, model._meta.columns[name]) for name in missing),
        *(migrator.drop_not_null(table, name) for name in nullable),
    )
    changes = [f"added the column {table}.{name}" for name in missing]
    changes += [f"dropped NOT NULL on {table}.{name}" for name in nullable]
    return (
        changes
        + copy_legacy_keys(model, table)
        + copy_legacy_labels(model, table)
        + fill_true_classes(model, table)
    )


def check_sqlite_rebuild(database, table):
    """Refuse when rebuilding the table would break what depends on it.

    SQLite before 3.53 has no ALTER COLUMN: peewee drops NOT NULL by rebuilding the table
    (create a copy, copy every row, drop the table, rename the copy, create the indexes
    again), inside our transaction. Rows and indexes survive, but triggers on the table
    vanish, a view that reads it makes the rename fail, and with PRAGMA foreign_keys on the
    drop deletes the rows of tables that refer to it (ON DELETE CASCADE). The service
    creates none of these; the MigrationError names any that someone added by hand.
    """
    if database.server_version >= (3, 53):
        return
    found = database.execute_sql(
        "SELECT type, name FROM sqlite_master WHERE type IN ('trigger', 'view') AND sql LIKE ?",
        (f"%{table}%",),
    ).fetchall()
    dependents = [f"the {kind} {name}" for kind, name in found]
    if database.pragma("foreign_keys"):
        dependents += [
            f"the table {other}"
            for other in database.get_tables()
            if any(key.dest_table == table for key in database.get_foreign_keys(other))
        ]
    if dependents:
        raise MigrationError(
            f"The table {table} cannot be upgraded: SQLite must rebuild it to drop NOT NULL, "
            f"which would break {', '.join(dependents)}; drop them (or turn foreign_keys "
            "off), start the service once, then create them again."
        )


def check_columns(model, table, columns):
    """MigrationError unless every existing column has the type family of its field."""
    for field in model._meta.sorted_fields:
        name, column = field.column_name, columns.get(field.column_name)
        if column is None and not field.null:
            raise MigrationError(
                f"The table {table} cannot be upgraded: it has no column {name}, which the "
                "model requires (NOT NULL); add it by hand with a value for every row."
            )
        if column is not None and type_family(column.data_type) != type_family(field.field_type):
            raise MigrationError(
                f"The table {table} cannot be upgraded: its column {name} is "
                f"{column.data_type}, where the model stores {type_family(field.field_type)} "
                f"values; convert or rename {table}.{name} by hand, then start again."
            )


def type_family(type_name):
    """'integer', 'real', 'text' or 'datetime'; an unknown type is only its own family."""
    word = (type_name.upper().replace("(", " ").split() or [""])[0]  # VARCHAR(255): VARCHAR
    return next((family for family, names in TYPE_FAMILIES.items() if word in names), word)


def copy_legacy_labels(model, table):
    """true_value = the JSON of true_class, where only the old column holds the label.

    An integer's JSON is its decimal text, which is what CAST(... AS TEXT) writes. This runs
    whenever such rows exist, so labels that a previous release still writes during a
    rolling deploy are copied at the next start. It reads first: a current table is not
    written to, and a read-only database that needs nothing still starts.
    """
    if "true_class" not in model._meta.fields or "true_value" not in model._meta.fields:
        return []
    pending = model.true_class.is_null(False) & model.true_value.is_null()
    if not model.select().where(pending).exists():
        return []
    copied = model.update(true_value=model.true_class.cast("TEXT")).where(pending).execute()
    return [f"copied {copied} labels from {table}.true_class to {table}.true_value"]


def fill_true_classes(model, table):
    """true_class = a classifier's integer or boolean label, where only true_value holds it.

    The first release for any task wrote /update's label to true_value alone; /update now
    writes true_class too (tasks.true_class_of: 1/0 for true/false, NULL past 32 bits).
    A classifier's row says what it is by what it stored (tasks.py): a binary one's
    positive_class, a multiclass one's prediction {"label": ..., "probabilities": {...}}
    (json.dumps' separators). A regressor's row has neither: its numbers, even 3, stay out.
    Each distinct label is read once and written with one UPDATE; like copy_legacy_labels,
    it reads first, and a table with nothing to fill is not written to (a classifier's
    labels that true_class_of refuses, 1.5 or 2**40, are read again at each start, no more).
    """
    columns = ("true_class", "true_value", "positive_class", "prediction")
    if not all(name in model._meta.fields for name in columns):
        return []
    classifier = model.positive_class.is_null(False) | model.prediction.contains(
        '"probabilities": {'
    )
    # What JSON writes for an integer or a boolean (and for a fraction: true_class_of says).
    integer_text = fn.SUBSTR(model.true_value, 1, 1).in_(list("-0123456789"))
    labelled = model.true_class.is_null() & model.true_value.is_null(False)
    pending = labelled & classifier & (integer_text | model.true_value.in_(["true", "false"]))
    labels = model.select(model.true_value).where(pending).distinct().tuples()
    classes = {text: true_class_of(json.loads(text)) for (text,) in labels}
    filled = sum(
        model.update(true_class=value).where(pending & (model.true_value == text)).execute()
        for text, value in classes.items()
        if value is not None
    )
    if not filled:
        return []
    return [f"copied {filled} labels from {table}.true_value to {table}.true_class"]


def copy_legacy_keys(model, table):
    """observation_key = the decimal text of observation_id, on rows stored without a key.

    Releases before contracts (contract.py) knew integer ids only; the key of an integer id
    is its decimal text, which is what CAST(... AS TEXT) writes.
    """
    if "observation_key" not in model._meta.fields:
        return []
    pending = model.observation_key.is_null() & model.observation_id.is_null(False)
    if not model.select().where(pending).exists():
        return []
    copied = (
        model.update(observation_key=model.observation_id.cast("TEXT")).where(pending).execute()
    )
    return [f"copied {copied} ids from {table}.observation_id to {table}.observation_key"]


def is_read_only(error):
    """SQLite: a file opened without write access; PostgreSQL: a read-only transaction."""
    original = getattr(error, "orig", error)
    pgcode = getattr(original, "pgcode", None)
    return "readonly database" in str(error) or pgcode == READ_ONLY_SQL_TRANSACTION
