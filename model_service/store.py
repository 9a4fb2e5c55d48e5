"""Step 3 of a request: store it, with what the model said, and answer from what is stored.

    store = Store(Prediction)                  # app.py's table, and its database
    store.upgrade()                            # create it, or bring it up to date
    score_and_store(requests, model, store)    # score together, one transaction, the answers

A retry (the same id and observation) is answered with what was stored, bit for bit; the
same id with another observation is a 409. prediction_to_dict is a stored row as JSON.
A body is stored without api.toml's [store] drop and hash fields (privacy.py), and a new id
is not stored once the store reaches DATABASE_QUOTA_MB (quota.py).
"""

import json
import logging
from datetime import UTC, datetime

from flask import current_app

from model_service import migrations
from model_service.database import discard_connections, in_transaction, unhurried
from model_service.errors import ApiError, StartupError
from model_service.parsing import read_observation
from model_service.privacy import StoredForm
from model_service.quota import Quota
from model_service.scoring import score_each
from model_service.signals import predictions_answered, row_labelled, rows_stored, values_replaced

log = logging.getLogger("app")

# The columns the engine reads and writes: app.py's Prediction model must declare them.
COLUMNS = (
    "id",
    "observation_key",
    "observation_id",
    "observation",
    "model_version",
    "prediction",
    "proba",
    "threshold",
    "positive_class",
    "replaced",
    "true_value",
    "true_class",
    "created_at",
    "challenger_version",
    "challenger_prediction",
    "rolled_up",
    "api_key_name",
)


# rolled_up of a row the service counts as it writes it: the release of the cells of
# /stats's sums (monitoring/rollups.py). A row marked otherwise (NULL: written by hand or by a
# release before the sums; a smaller number: counted by an earlier release's, into its own
# tables) is counted by the next /stats, into this release's.
ROLLUPS_RELEASE = 3


class Store:
    """app.py's Prediction table and the database it is bound to: what every capability
    reads and writes (current_store() in a request)."""

    def __init__(self, table):
        missing = [name for name in COLUMNS if name not in table._meta.fields]
        if missing:
            raise StartupError(
                f"app.py's {table.__name__} model lacks the column {missing[0]}, which the "
                "service stores; keep every column of the template's model."
            )
        self.table = table
        self.database = table._meta.database
        self.stored_form = StoredForm()  # bodies as sent; api.toml's [store]: privacy.init_app
        self.quota = Quota(self)  # measured, never full; DATABASE_QUOTA_MB: quota.init_app

    def in_transaction(self, work):
        return in_transaction(self.database, work)

    def discard_connections(self):
        discard_connections(self.database)

    def upgrade(self):
        """Create the table, or bring one of an earlier release up to date (migrations.py)."""
        try:
            with unhurried():  # an index built on a table of millions of rows takes minutes
                changes = migrations.upgrade(self.database, self.table)
        except migrations.MigrationError as error:
            raise StartupError(str(error)) from None
        for change in changes:
            log.info("database upgraded: %s", change)

    def save(self, rows):
        """Insert rows whose key is new; return the stored row for every key.

        A key that is already stored is left untouched (a retry, or a conflict the caller
        reports), and the insert never fails on it, even when two servers race.
        """
        table, keys = self.table, [row["observation_key"] for row in rows]
        returning = getattr(self.database.obj, "returning_clause", False)

        def insert_then_read():
            insert = table.insert_many(rows).on_conflict_ignore()
            if returning:  # RETURNING (PostgreSQL; SQLite 3.35+): the keys this insert wrote
                inserted = {
                    row.observation_key for row in insert.returning(table.observation_key).execute()
                }
            else:
                insert.execute()
            stored = table.select().where(table.observation_key.in_(keys))
            found = {prediction.observation_key: prediction for prediction in stored}
            if not returning:  # an older SQLite: the rows that carry this batch's time
                now = rows[0]["created_at"]
                inserted = {key for key, row in found.items() if row.created_at == now}
            if inserted:
                rows_stored.send(self, rows=[found[key] for key in sorted(inserted)])
            return found

        return self.in_transaction(insert_then_read)

    def read(self, keys):
        """The stored row of each key that is stored: {key: row} (save's answer, unwritten)."""
        table = self.table
        stored = table.select().where(table.observation_key.in_(keys))
        return self.in_transaction(lambda: {row.observation_key: row for row in stored})

    def label(self, key, **values):
        """Set a row's true value (values: true_value, true_class); the row, or None when
        the key is not stored. row_labelled tells the counts what changed (before, after).

        The row is locked first (an update that changes nothing: SQLite's write lock,
        PostgreSQL's row lock), then read: two /update of one id at once take turns, and
        the second reads the first's value as its `before`."""
        table = self.table
        of_key = table.observation_key == key

        def update():
            if not table.update(true_value=table.true_value).where(of_key).execute():
                return None
            before = table.get(of_key)
            table.update(**values).where(of_key).execute()
            after = table.get(of_key)
            row_labelled.send(self, before=before, after=after)
            return after

        return self.in_transaction(update)


def current_store():
    """The Store of the app that serves this request (create_app keeps it)."""
    return current_app.extensions["store"]


def same_observation(stored_body, values, model):
    """Whether a stored request carried the same observation (after validation)."""
    try:
        stored_payload = json.loads(stored_body)
        stored_values, _ = read_observation(model.contract.observation_of(stored_payload), model)
    except (ValueError, KeyError, TypeError, AttributeError, ApiError):
        return False
    # json.dumps writes NaN as NaN, so two missing values compare equal here.
    return json.dumps(stored_values) == json.dumps(values)


def score_and_store(requests, model, store):
    """Score requests together and store them in one transaction (group commit).

    Returns, in order, the output to answer (a dict, see tasks.py) or the ApiError to
    raise for each request: exactly what /predict answers when they come one at a time. A
    database error raises and stores nothing: every request of the batch gets its 503.
    """
    scored = score_each([r.values for r in requests], model)
    now = utc_now()
    texts = [store.stored_form.text(r.body) for r in requests]  # without [store] drop, hash
    new_rows = [
        new_row(r, output, model, now, text)
        for r, output, text in zip(requests, scored, texts, strict=True)
        if not isinstance(output, ApiError)
    ]
    if new_rows and store.quota.full():  # DATABASE_QUOTA_MB reached: only stored ids answer
        stored = store.read([row["observation_key"] for row in new_rows])
    else:
        stored = store.save(new_rows) if new_rows else {}
    outcomes = []
    for request_, output, text in zip(requests, scored, texts, strict=True):
        if isinstance(output, ApiError):
            outcomes.append(output)
            continue
        row = stored.get(request_.key)
        if row is None:  # a new id in a full store: a 507, or answered unstored (quota.py)
            outcomes.append(store.quota.unstored(output))
            continue
        answered = stored_output(row, model)
        if answered is not None and is_retry(row, text, request_, model, store.stored_form):
            outcomes.append(answered)  # a new row, or a client retrying: the same answer
        else:
            outcomes.append(conflict(request_, output, model))
    predictions_answered.send(model, outcomes=outcomes, requests=requests)
    replaced = [
        r.replaced
        for r, outcome in zip(requests, outcomes, strict=True)
        if r.replaced and not isinstance(outcome, ApiError)
    ]
    if replaced:
        values_replaced.send(model, replaced=replaced)
    return outcomes


def is_retry(row, text, request_, model, form):
    """Whether a stored row holds this request's observation (`text`: as it would be
    stored); compared on the stored form when api.toml keeps fields out (privacy.py)."""
    if row.observation == text:
        return True
    if form.private:
        return form.same(row.observation, text, model)
    return same_observation(row.observation, request_.values, model)


def new_row(request_, output, model, now, text):
    """The columns of a new row: the request (`text`: its body as stored), what the model
    said, and which model said it."""
    return {
        "observation_key": request_.key,
        "observation_id": request_.integer_id,
        "observation": text,
        "model_version": model.version,
        "prediction": json.dumps(output),  # repr of each float: it reads back bit for bit
        "replaced": json.dumps(request_.replaced) if request_.replaced else None,
        "created_at": now,
        "rolled_up": ROLLUPS_RELEASE,  # counted by rows_stored's listener (rollups.py), now
        "api_key_name": request_.api_key_name,  # API_KEYS: who wrote it (api_keys.py)
        **model.task.columns(output),  # a binary classifier's proba, threshold, positive class
    }


def stored_output(row, model):
    """The output a stored row was answered with, or None if this task cannot answer it.

    A row stored before the upgrade has only its proba (a binary classifier's); a row from
    a model of another task (swapped since) lacks this task's outputs: the id is taken.
    """
    if row.prediction is not None:
        output = json.loads(row.prediction)
        return output if all(key in output for key in model.task.outputs) else None
    if row.proba is not None and model.task.name == "binary":
        return model.task.output(row.proba)
    return None


def conflict(request_, output, model):
    """409: the id is stored with another observation. It carries what this request would
    have been answered (its request.<field> sources quote this request, as a 200 does)."""
    return ApiError(
        409,
        f"Observation ID {request_.key} already exists with a different observation; "
        "send it with a new id",
        **model.contract.predict_answer(output, json.loads(request_.body), model.task),
    )


# ---------------------------------------------------------------------------------------
# A stored row as JSON
# ---------------------------------------------------------------------------------------


def prediction_to_dict(prediction, model):
    """A stored row as JSON; the true value under the name /update takes (true_class...)."""
    return {
        "id": prediction.id,
        "observation_id": model.contract.client_id(prediction.observation_key),
        "observation": prediction.observation,
        "model_version": prediction.model_version,  # null: stored before the upgrade
        "prediction": from_json(prediction.prediction),
        "proba": prediction.proba,
        "threshold": prediction.threshold,
        "positive_class": from_json(prediction.positive_class),
        model.task.truth_field: true_value(prediction),
        "created_at": prediction.created_at.isoformat() + "Z",
    }


def from_json(text):
    return None if text is None else json.loads(text)


def true_value(prediction):
    """The true value from /update; rows labelled before the upgrade have only true_class."""
    if prediction.true_value is not None:
        return json.loads(prediction.true_value)
    return prediction.true_class


def utc_now():
    return datetime.now(UTC).replace(tzinfo=None)  # stored naive, always UTC
