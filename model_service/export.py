"""GET /export: the stored rows as one tidy table, streamed (admin only, like /stats).

    GET /export                      CSV (Python's csv module), a header line, then a line per row
    GET /export?format=jsonl         JSON lines: one object per row, the same keys in the same order
    ?since=&until=                   ISO 8601 times, as /stats takes them (created_at)
    ?model_version=                  one version (`unknown`: rows stored before it was recorded)
    ?labelled=true                   only the rows whose true value arrived (false: only the others)
    ?after_id=<row_id>               only the rows stored after that one (clients/export.py resumes)
    ?api_key_name=<name>             only the rows that key wrote (API_KEYS, api_keys.py)

The columns, in order: `row_id` (the stored row's id: the rows come in its order), one per
id field of the contract (the id as the client sent it), one per feature of columns.json
(the value as sent; empty when it was missing), the prediction columns, named as
clients/score_csv.py names them (answer_columns.py), the true value (the task's truth_field,
`true_class` or `true_value`; `true_value_<target>` per target of a multi-target regressor),
`model_version`, `created_at` (UTC, ISO 8601), then the fields the requests carried that the
model ignores, each under its own name. Which fields those are is read from the first page
(PAGE_ROWS rows) of the rows the filters select, whatever after_id: a resumed export gets
the same header; a field that first appears later is not a column (/list-db-contents shows
the whole stored body). An id field or a feature keeps its name; any other column whose
name is taken gets a prefix until it is free (answer_ for a prediction, as score_csv.py
does; stored_ for the service's columns; request_ for an ignored field).

Every value is the JSON value stored: in JSON lines, exactly it (NaN for a NaN sent); in CSV,
a number as Python writes it (repr: a float reads back bit for bit), a string as it is, and
any other value as JSON writes it (true, [1, 2], {"a": 1}); null is an empty cell.

Memory stays flat: the rows are read PAGE_ROWS at a time, by id, each page in a transaction
of its own, and written out before the next is read (in a gevent worker, other requests run
every SLICE_ROWS rows). Every page is bounded by the last id the first query saw, so the export
is the rows stored when it started; the header X-Export-Rows says how many.
"""

import csv
import io
import json
import logging
from dataclasses import dataclass, replace
from functools import partial

from flask import Blueprint, Response, current_app, request, stream_with_context
from peewee import fn

from model_service.answer_columns import answer_columns, cell, dig
from model_service.errors import ApiError
from model_service.monitoring.stats import api_key_name, window_bound
from model_service.monitoring.window import Window, let_others_run, parsed
from model_service.store import current_store, stored_output, true_value
from model_service.web import query_integer, require_admin

log = logging.getLogger("app")
blueprint = Blueprint("export", __name__)

PAGE_ROWS = 1000  # rows per transaction: bounds the memory of an export
# Rows written between two chances for the worker's other requests to run: a page takes
# tens of milliseconds to write, and a prediction would wait for all of it.
SLICE_ROWS = 100
MEDIA_TYPES = {"csv": "text/csv", "jsonl": "application/jsonl"}
LABELLED = {"true": True, "false": False}


def init_app(app):
    app.register_blueprint(blueprint)


@blueprint.get("/export")
def export():
    require_admin()
    model = current_app.config["MODEL"]
    output_format = request.args.get("format", "csv")
    if output_format not in MEDIA_TYPES:
        raise ApiError(422, f"format must be csv or jsonl, not {output_format!r}")
    selection = read_selection()  # every filter checked (422) before any query
    # A database that is down answers 503 here, before the 200 is sent.
    last_id, count, first_bodies = selection.in_transaction(partial(survey, selection))
    columns = table_columns(model, first_bodies)
    lines = write_csv if output_format == "csv" else write_jsonl
    rows = (row_values(p, columns, model) for p in stored_rows(selection, last_id))
    body = lines(columns, rows)
    response = Response(stream_with_context(body), mimetype=MEDIA_TYPES[output_format])
    response.headers["X-Export-Rows"] = str(count)
    return response


# ---------------------------------------------------------------------------------------
# Which rows: the filters, and the pages
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The rows /stats' Window selects (time, version, API key), labelled or not, after an
    id."""

    window: Window
    labelled: bool | None = None
    after_id: int | None = None

    @property
    def table(self):
        return self.window.table

    def in_transaction(self, work):
        return self.window.in_transaction(work)

    def where(self, query, last_id=None):
        table, query = self.table, self.window.where(query, last_id)
        if self.labelled is not None:
            known = table.true_value.is_null(False) | table.true_class.is_null(False)
            query = query.where(known if self.labelled else ~known)
        if self.after_id is not None:
            query = query.where(table.id > self.after_id)
        return query


def read_selection():
    since, until = window_bound("since"), window_bound("until")
    if since is not None and until is not None and since > until:
        raise ApiError(422, "until must not be earlier than since")
    version = request.args.get("model_version")
    if version == "":
        raise ApiError(422, "model_version must name a version (/stats lists them), or unknown")
    labelled = request.args.get("labelled")
    if labelled is not None and labelled not in LABELLED:
        raise ApiError(422, f"labelled must be true or false, not {labelled!r}")
    return Selection(
        Window(current_store(), since, until, version, api_key_name=api_key_name()),
        labelled=None if labelled is None else LABELLED[labelled],
        after_id=query_integer("after_id", None),
    )


def survey(selection):
    """(the last id, the number of rows, the bodies of the filters' first page, after_id
    aside: where the ignored fields are read, the same for a resumed export)."""
    table = selection.table
    last_id, count = selection.where(table.select(fn.MAX(table.id), fn.COUNT(table.id))).tuples()[0]
    first = replace(selection, after_id=None).where(
        table.select(table.observation).order_by(table.id).limit(PAGE_ROWS)
    )
    return last_id, int(count or 0), [body for (body,) in first.tuples()]


def stored_rows(selection, last_id):
    """The selected rows up to last_id, in the order of their ids, PAGE_ROWS at a time."""
    table = selection.table
    while last_id is not None:
        query = selection.where(table.select().order_by(table.id).limit(PAGE_ROWS), last_id)
        page = selection.in_transaction(lambda query=query: list(query))
        for first in range(0, len(page), SLICE_ROWS):
            yield from page[first : first + SLICE_ROWS]
            let_others_run()  # a gevent worker's other requests run every SLICE_ROWS rows
        if len(page) < PAGE_ROWS or page[-1].id == last_id:
            return
        selection = replace(selection, after_id=page[-1].id)


# ---------------------------------------------------------------------------------------
# The columns, and a row's values
# ---------------------------------------------------------------------------------------


@dataclass
class Row:
    """What the columns read of a stored row."""

    prediction: object  # the Prediction
    payload: dict  # the stored body ({} when it cannot be read)
    observation: dict  # its features' object ({} when there is none)
    answer: dict  # the contract's answer to it ({} when this task cannot read the row)


def table_columns(model, first_bodies):
    """[(name, value of a Row)], in the table's order (the module's docstring)."""
    contract, task = model.contract, model.task
    columns, taken = {}, set()

    def add(name, value, prefix=None):
        while prefix is not None and name in taken:
            name = f"{prefix}{name}"
        taken.add(name)
        columns[name] = value

    taken.update(contract.id_fields)  # the id fields and the features keep their names
    flat = not contract.observation_field
    features = [
        (name if name not in contract.id_fields else contract.field_name(name), name)
        for name in model.columns
        if not (flat and name in contract.id_fields)  # a flat body's id is that column
    ]
    taken.update(name for name, _ in features)
    add("row_id", lambda row: row.prediction.id, "stored_")
    for name in contract.id_fields:
        add(name, partial(sent_id, name=name, contract=contract))
    for name, field in features:
        add(name, lambda row, field=field: row.observation.get(field))
    answer = contract.predict_sources or task.answer_sources
    for name, path in answer_columns(task.describe(), answer).paths.items():
        add(name, lambda row, path=path: dig(row.answer, path), "answer_")
    for name, target in truth_columns(task):
        add(name, partial(truth, target=target), "stored_")
    add("model_version", lambda row: row.prediction.model_version, "stored_")
    add("created_at", lambda row: row.prediction.created_at.isoformat() + "Z", "stored_")
    for name, nested in ignored_fields(model, first_bodies):
        source = "observation" if nested else "payload"
        add(name, lambda row, n=name, s=source: getattr(row, s).get(n), "request_")
    return columns


def sent_id(row, name, contract):
    """The id field as the client sent it; from the stored key when the body lacks it."""
    if name in row.payload:
        return row.payload[name]
    client_id = contract.client_id(row.prediction.observation_key)
    return client_id.get(name) if len(contract.id_fields) > 1 else client_id


def truth_columns(task):
    """[(column, target)]: the task's truth_field, or one column per target."""
    targets = getattr(task, "targets", None) or []
    if getattr(task, "width", 1) > 1:
        return [(f"{task.truth_field}_{target}", target) for target in targets]
    return [(task.truth_field, None)]


def truth(row, target):
    value = true_value(row.prediction)
    if target is None:
        return value
    return value.get(target) if isinstance(value, dict) else None


def ignored_fields(model, bodies):
    """[(field, whether it is in the observation object)]: the fields of these bodies that
    are neither an id field, nor the observation field, nor a feature; as first seen."""
    contract, features = model.contract, set(model.columns)
    known = {*contract.id_fields, contract.observation_field, *features}
    found = {}
    for text in bodies:
        payload = parsed(text)
        if not isinstance(payload, dict):
            continue
        found.update((name, False) for name in payload if name not in known and name not in found)
        observation = contract.observation_of(payload) if contract.observation_field else None
        for name in observation or {}:
            if name not in features and name not in found:
                found[name] = True
    return list(found.items())


def row_values(prediction, columns, model):
    payload = parsed(prediction.observation)
    payload = payload if isinstance(payload, dict) else {}
    observation = model.contract.observation_of(payload)
    output = stored_output(prediction, model)
    answer = model.contract.predict_answer(output, payload, model.task) if output else {}
    row = Row(prediction, payload, observation if isinstance(observation, dict) else {}, answer)
    return [value(row) for value in columns.values()]


# ---------------------------------------------------------------------------------------
# The two formats
# ---------------------------------------------------------------------------------------


def write_csv(columns, rows):
    """The header, then a page of lines at a time (each cell as answer_columns.cell)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for count, values in enumerate(rows, start=1):
        writer.writerow([cell(value) for value in values])
        if count % PAGE_ROWS == 0:
            yield take(buffer)
    yield take(buffer)


def write_jsonl(columns, rows):
    """One JSON object per line, keys in the columns' order."""
    names, lines = list(columns), []
    for values in rows:
        lines.append(json.dumps(dict(zip(names, values, strict=True))) + "\n")
        if len(lines) == PAGE_ROWS:
            yield "".join(lines)
            lines = []
    yield "".join(lines)


def take(buffer):
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
