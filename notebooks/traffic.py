"""The traffic the notebooks analyse: the service's stored predictions, as one tidy table.

    import traffic
    found = traffic.load_traffic()
    print(found.source)  # one sentence: where the rows come from
    found.rows           # one row per prediction, in the order they arrived
    found.database_url   # the database they were read from (None: an export file)

load_traffic takes the first source there is (DEMO_TRAFFIC=1 skips to the third, whatever is
stored: `make notebooks` sets it when a predictions.db is there, so that the outputs it saves
are those of a fresh clone):

1. **An export file**: the CSV file named by the environment variable TRAFFIC_CSV. It
   holds one column per feature of columns.json (a cell as text; empty: missing) and
   `proba`, the probability the service answered, as clients/score_csv.py names it;
   optionally the true outcome (`true_value` or `true_class`), `threshold`,
   `positive_class`, `model_version` and `created_at`. Other columns (ids, `status`,
   `error`, fields the model ignores) are ignored; a row without a probability (one that
   score_csv.py could not score) is left out. A file without `model_version` is taken to
   hold the answers of the model in the repository.
2. **The service's database**: the one named by DATABASE_URL (SQLite or PostgreSQL, such as
   Railway's), else `predictions.db` at the repository root, where `make run` writes, when
   it holds predictions. It is only read: a file that does not exist is not created.
3. **Demo traffic**, made here when there is neither: notebook 1's held-out passengers
   (clients/replay_traffic.py picks them) sent to the service in this process (app.py's
   create_app on a temporary SQLite file, through Flask's test client), each to the predict
   route, then its true outcome to the update route, as `make replay` does to a running
   service, one at a time: every run analyses the same rows in the same order, and shows
   the same figures. It needs no server and no network. The file is kept while `found`
   is (until the kernel stops, at the latest), so that the notebook can ask the service's
   GET /stats about the same rows (notebook 3, section 8); then it is deleted.

`rows` has one column per feature (the value as sent, None when missing or unreadable),
then `model_version` ("unknown" for rows stored before it was recorded), `proba`,
`threshold` (NaN when not stored), `positive_class` and `true_value` (as JSON reads them;
None when not stored, or before /update), `created_at` (UTC; NaT when unknown) and
`readable`: False when the observation cannot be read as the model's columns (not JSON,
or a value of the wrong type for its column's training dtype).

When a source is named but holds nothing to analyse, load_traffic raises NothingToRead,
whose one sentence says why; Jupyter shows that sentence instead of a traceback.
"""

import hashlib
import importlib
import json
import logging
import os
import pickle
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import peewee
from playhouse.db_url import connect

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE = "predictions.db"  # what `make run` writes, at the repository root
TRUTH_COLUMNS = ["true_value", "true_class"]  # an export's name for the outcome, by preference


class NothingToRead(Exception):
    """A source with nothing to analyse: one sentence. Jupyter shows what
    _render_traceback_ returns instead of a traceback, and "Run all" stops there."""

    def _render_traceback_(self):
        return [str(self)]


@dataclass
class Traffic:
    rows: pd.DataFrame  # one row per prediction (see the module's docstring)
    source: str  # one sentence: where the rows come from
    # The database read, as a service would be given it (DATABASE_URL): an app built on it
    # answers /stats about the same rows. None for an export file.
    database_url: str | None = None
    # The demo's temporary folder: deleted with this object, or when the kernel stops.
    kept: object = field(default=None, repr=False)


def load_traffic(root=ROOT):
    """The traffic to analyse, from the first source there is (see the module's docstring);
    `root` is the repository whose model answered (its columns.json, dtypes.pickle)."""
    root = Path(root)
    dtypes = training_dtypes(root)
    if os.environ.get("DEMO_TRAFFIC"):
        return demo_traffic(root, dtypes, "DEMO_TRAFFIC is set")
    export = os.environ.get("TRAFFIC_CSV")
    if export:
        return read_export(Path(export), dtypes, root)
    url = os.environ.get("DATABASE_URL")
    if url:
        rows = read_database(absolute(url, root), dtypes)
        if rows is None or not len(rows):
            raise NothingToRead(
                f"No predictions are stored in the database of DATABASE_URL "
                f"({described(url)}) yet: send the service traffic (`make replay "
                f"URL=...`), or unset DATABASE_URL to analyse demo traffic made here."
            )
        return Traffic(
            rows,
            f"This run analyses the {len(rows)} predictions stored in the database of "
            f"DATABASE_URL ({described(url)}).",
            absolute(url, root),
        )
    url = f"sqlite:///{root / DEFAULT_DATABASE}"
    rows = read_database(url, dtypes)
    if rows is not None and len(rows):
        return Traffic(
            rows,
            f"This run analyses the {len(rows)} predictions stored in {DEFAULT_DATABASE}, "
            "the database `make run` writes.",
            url,
        )
    return demo_traffic(
        root, dtypes, f"no TRAFFIC_CSV or DATABASE_URL was given, and {DEFAULT_DATABASE} holds none"
    )


def training_dtypes(root):
    """{column: training dtype} of the model in `root`, in columns.json's order."""
    columns = json.loads((root / "columns.json").read_text())
    with open(root / "dtypes.pickle", "rb") as file:
        dtypes = pickle.load(file)
    return {column: dtypes[column] for column in columns}


# ---------------------------------------------------------------------------------------
# The service's database
# ---------------------------------------------------------------------------------------


def absolute(url, root):
    """A relative SQLite path is taken from the repository root, where `make run` starts."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{root / url.removeprefix('sqlite:///')}"
    return url


def described(url):
    """The database of a URL, without its user and password."""
    if url.startswith("sqlite:"):
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def read_database(url, dtypes):
    """The stored predictions, oldest first; None when there is no table (or no file)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None  # connecting would create an empty file
    try:
        database = connect(url)
        with database:
            if not database.table_exists("prediction"):  # the service creates it at start
                return None
            stored = database.execute_sql(
                "SELECT observation, model_version, proba, threshold, positive_class, "
                "true_value, true_class, created_at FROM prediction ORDER BY id"
            ).fetchall()
    except peewee.DatabaseError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "no reason given"
        raise NothingToRead(
            f"Cannot read the predictions of {described(url)} ({type(error).__name__}: {reason})."
        ) from None
    return tidy(
        dtypes,
        [features_of(observation_in(row[0]), dtypes) for row in stored],
        model_version=[row[1] for row in stored],
        proba=[row[2] for row in stored],
        threshold=[row[3] for row in stored],
        positive_class=[from_json(row[4]) for row in stored],
        # Rows labelled by releases before any task have only true_class (store.true_value).
        true_value=[row[6] if row[5] is None else json.loads(row[5]) for row in stored],
        created_at=[row[7] for row in stored],
    )


def observation_in(body):
    """The observation of a stored request body: nested under "observation", as the
    tutorial sends it, or at the top level (a brief's flat body); None when unreadable."""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    nested = payload.get("observation")
    return nested if isinstance(nested, dict) else payload


def from_json(text):
    return None if text is None else json.loads(text)


# ---------------------------------------------------------------------------------------
# An export file
# ---------------------------------------------------------------------------------------


def read_export(path, dtypes, root):
    """The rows of an export file (see the module's docstring)."""
    score_csv = import_from_root("clients.score_csv")  # reads CSV cells as score_csv.py sends them
    try:
        table = score_csv.read_csv(path)  # every cell as its text, "" when empty
    except score_csv.UsageError as error:
        raise NothingToRead(f"{error} (the file of TRAFFIC_CSV)") from None
    missing = [name for name in [*dtypes, "proba"] if name not in table.columns]
    if missing:
        raise NothingToRead(
            f"{path} (the file of TRAFFIC_CSV) has no column {', '.join(missing)}: an export "
            "holds one column per feature of columns.json and the probability, proba."
        )
    scored = table[pd.to_numeric(table["proba"], errors="coerce").notna()]
    if not len(scored):
        raise NothingToRead(f"{path} (the file of TRAFFIC_CSV) holds no probability.")
    convert = {name: score_csv.converter(str(dtype)) for name, dtype in dtypes.items()}
    truth = next((name for name in TRUTH_COLUMNS if name in table.columns), None)
    answered_by = None  # a file that names no model: the repository's, as the service names it
    if "model_version" not in table.columns:
        answered_by = hashlib.sha256((root / "pipeline.pickle").read_bytes()).hexdigest()[:12]

    def cells(name, parse=str, default=None):
        if name is None or name not in scored.columns:
            return [default] * len(scored)
        return [default if text == "" else parse(text) for text in scored[name]]

    rows = tidy(
        dtypes,
        [
            features_of({name: convert[name](text) for name, text in line.items()}, dtypes)
            for line in scored[list(dtypes)].to_dict(orient="records")
        ],
        model_version=cells("model_version", default=answered_by),
        proba=cells("proba"),
        threshold=cells("threshold"),
        positive_class=cells("positive_class", json_or_text),
        true_value=cells(truth, json_or_text),
        created_at=cells("created_at"),
    )
    left_out = len(table) - len(scored)
    return Traffic(
        rows,
        f"This run analyses the {len(rows)} predictions of the export file {path} (TRAFFIC_CSV)"
        + (f"; {left_out} of its rows hold no probability and are left out" if left_out else "")
        + ("; it names no model_version: taken as this model's answers" if answered_by else "")
        + ".",
    )


def json_or_text(text):
    """A cell as JSON reads it (1, true, "a"), or as its text when it is not JSON (a label)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# ---------------------------------------------------------------------------------------
# Demo traffic
# ---------------------------------------------------------------------------------------


def demo_traffic(root, dtypes, why):
    """Notebook 1's held-out passengers and their outcomes, through the service in this
    process, on a temporary SQLite file: the rows it stored. `why`: why no other source.
    The file stays until the Traffic returned is deleted (see the module's docstring)."""
    # Deleted by its finalizer: with the Traffic that keeps it, or when the kernel stops.
    folder = tempfile.TemporaryDirectory(prefix="demo-traffic-")
    url = f"sqlite:///{Path(folder.name) / 'demo.db'}"
    service = import_service(url, root)
    served = service.create_app({"DATABASE_URL": url, "MODEL_DIR": str(root)})
    try:
        passengers, predicted, updated = replay_into(served)
        rows = read_database(url, dtypes)
    finally:
        served.extensions["store"].discard_connections()  # its work is done
    if set(predicted) != {200} or set(updated) != {200}:
        raise NothingToRead(
            f"The demo traffic was not stored as sent: the predict route answered {predicted}, "
            f"the update route {updated}."
        )
    return Traffic(
        rows,
        f"This run analyses demo traffic made here ({why}): the {len(passengers)} passengers "
        "notebook 1 held out, sent to the service in this process on a temporary SQLite "
        "file, then their true outcomes.",
        url,
        folder,
    )


def import_service(url, root):
    """app.py, imported. Importing it builds an app from the environment: on the database
    of `url` and this model then, never on a predictions.db of the notebook's folder; and
    the logging it sets up for the service is taken down again, so that its start-up lines
    do not clutter the notebook."""
    saved = {name: os.environ.get(name) for name in ("DATABASE_URL", "MODEL_DIR")}
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    os.environ.update(DATABASE_URL=url, MODEL_DIR=str(root))
    logging.disable(logging.INFO)
    try:
        app = import_from_root("app")
    finally:
        logging.disable(logging.NOTSET)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        logger.handlers[:], logger.level = handlers, level
    return app


def replay_into(served):
    """What `make replay` sends, sent to a Flask app: (passengers, statuses of each round)."""
    replay_traffic = import_from_root("clients.replay_traffic")

    def post(path, body):
        answer = client.post(path, json=body)
        return answer.status_code, answer.get_json()

    client = served.test_client()
    health = client.get("/health").get_data()
    try:
        model, contract = replay_traffic.model_and_contract(health)
        truth_field = replay_traffic.truth_field_for(model, contract)
    except replay_traffic.NotTheTutorialModel as reason:
        raise NothingToRead(
            f"The demo traffic (notebook 1's Titanic passengers) does not fit the model in "
            f"the repository: {reason}; give the traffic of your own service instead "
            "(DATABASE_URL or TRAFFIC_CSV)."
        ) from None
    passengers = replay_traffic.held_out_passengers()
    # One at a time: each row gets its one-row answer (scored together, a probability may
    # differ in its last digit) and is stored in the order sent. So every run stores the
    # same rows in the same order, and the notebook shows the same figures.
    statuses = replay_traffic.replay(
        post, passengers, connections=1, truth_field=truth_field, contract=contract
    )
    return passengers, *statuses


def import_from_root(name):
    """A module of the repository (app.py, clients/...), imported only by the sources that
    need it: reading a database needs nothing but peewee and pandas."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(name)


# ---------------------------------------------------------------------------------------
# The common shape
# ---------------------------------------------------------------------------------------


def features_of(observation, dtypes):
    """[value of each column], or None when the observation cannot be read as the model's
    columns: a number for a numeric dtype, true or false for a boolean one, else a string."""
    if observation is None:
        return None
    values = [observation.get(name) for name in dtypes]
    for value, dtype in zip(values, dtypes.values(), strict=True):
        if value is None:
            continue
        if pd.api.types.is_bool_dtype(dtype):
            fits = isinstance(value, bool)
        elif pd.api.types.is_numeric_dtype(dtype):
            fits = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            fits = isinstance(value, str)
        if not fits:
            return None
    return values


def tidy(
    dtypes, features, *, model_version, proba, threshold, positive_class, true_value, created_at
):
    """The table of the module's docstring: each row's features (None: unreadable), then
    the other columns, each given as a list of one value per row."""
    empty = [None] * len(dtypes)
    known = [f if f is not None else empty for f in features]
    rows = pd.DataFrame(known, columns=list(dtypes), dtype=object)
    rows["model_version"] = pd.Series(model_version, dtype=object).fillna("unknown")
    rows["proba"] = pd.to_numeric(pd.Series(proba, dtype=object), errors="coerce")
    rows["threshold"] = pd.to_numeric(pd.Series(threshold, dtype=object), errors="coerce")
    rows["positive_class"] = pd.Series(positive_class, dtype=object)
    rows["true_value"] = pd.Series(true_value, dtype=object)
    rows["created_at"] = pd.to_datetime(
        pd.Series(created_at, dtype=object), format="ISO8601", utc=True
    ).dt.tz_convert(None)
    rows["readable"] = [f is not None for f in features]
    return rows
