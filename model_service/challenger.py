"""A challenger in the shadow of the model that answers (CHALLENGER_DIR).

    challenger.init_app(app)   # in create_app: loads CHALLENGER_DIR, when it is set

A second model folder (models/<name>/: pipeline.pickle, columns.json, dtypes.pickle, and
api.toml when it has one) of the same columns and the same task. Every prediction the
service answers is scored by it too, *after* the answer: the batch's requests are queued,
and a background worker of each process scores what has gathered in one call and writes
each output beside the row it shadows (challenger_version, challenger_prediction). It is
never returned to a client. /stats then compares the two models on the rows both scored
(monitoring/comparison.py), and promoting it is pointing MODEL_DIR at its folder.

Why after the answer: a challenger that raises, hangs or is slow must cost the client
nothing. Under gunicorn's gevent workers the challenger's pipeline runs in a native
thread (gevent's threadpool), so that the requests of the worker keep being served while
it computes; its rows are written in their own short transaction. A row it cannot score
keeps challenger_version NULL, and /metrics counts it (challenger_scorings_total). When
the queue holds MAX_PENDING rows (the challenger cannot keep up), new rows are skipped,
and counted so, rather than let the queue grow without bound.
"""

import json
import logging
import os
import threading
import time
from collections import deque
from pathlib import Path

import gevent
from gevent import monkey
from peewee import Case

from model_service.artifacts import load_model
from model_service.contract import read_contract_file
from model_service.errors import StartupError
from model_service.scoring import all_finite, frame_of
from model_service.settings import ROOT
from model_service.signals import challenger_scored, predictions_answered

log = logging.getLogger("app")

# How long the worker lets rows gather: a call costs ~10 ms whatever its size, so a second
# of delay (nobody waits for the shadow) makes it ~0.1 ms a row instead of ~0.5.
GATHER_SECONDS = 1.0
BATCH_ROWS = 512  # rows scored in one call at most
MAX_PENDING = 10_000  # rows waiting at most; beyond, the challenger skips new rows


def init_app(app):
    """Load CHALLENGER_DIR (when set), check it can shadow the model, start its Shadow."""
    folder = app.config.get("CHALLENGER_DIR")
    if not folder:
        return
    model = app.config["MODEL"]
    challenger = load_challenger(folder, app.config["THRESHOLD"], app.config["POSITIVE_CLASS"])
    check_compatible(model, challenger, folder)
    app.config["CHALLENGER"] = challenger
    app.extensions["shadow"] = Shadow(model, challenger, app.extensions["store"])


def load_challenger(folder, threshold, positive_class):
    """The challenger's LoadedModel. Its api.toml's [model] threshold and positive_class
    decide for it; where it says nothing, THRESHOLD and POSITIVE_CLASS do, as for the model
    that answers: so both decide by the same rule unless its folder says otherwise."""
    path = Path(folder)
    if not path.is_dir():
        raise StartupError(f"CHALLENGER_DIR={folder} is not a folder; name a model folder.")
    own = read_contract_file(path).get("model", {})
    return load_model(
        path,
        None if "threshold" in own else threshold,
        None if "positive_class" in own else positive_class,
    )


def check_compatible(model, challenger, folder):
    """A StartupError, in one sentence, when the challenger cannot shadow the model."""
    if set(challenger.columns) != set(model.columns):
        different = sorted(set(challenger.columns) ^ set(model.columns))
        raise StartupError(
            f"CHALLENGER_DIR={folder} was trained on other columns than the model that "
            f"answers (not in both: {different}); a challenger must take the same observation."
        )
    mine, theirs = model.task.describe(), challenger.task.describe()
    for key in ("task", "classes", "targets"):
        if mine.get(key) != theirs.get(key):
            raise StartupError(
                f"CHALLENGER_DIR={folder} predicts another {key} ({theirs.get(key)}) than the "
                f"model that answers ({mine.get(key)}); a challenger must do the same task."
            )


def folder_name(folder):
    """A model folder as /health shows it: relative to the repository when inside it."""
    path = Path(folder).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class Shadow:
    """The queue of answered rows the challenger has yet to score, and its worker.

    submit() takes what a batch answered (it listens to predictions_answered); the worker,
    started in each process on first use (gunicorn forks after create_app), scores and
    stores. wait_idle() is for tests and benchmarks: it returns once all is written.
    """

    def __init__(self, model, challenger, store):
        self.model, self.challenger, self.store = model, challenger, store
        # The challenger's columns may come in another order: its frame takes them so.
        self.order = [model.columns.index(column) for column in challenger.columns]
        self.cooperative = monkey.is_module_patched("threading")
        self._pending = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._worker_pid = None
        predictions_answered.connect(self.submit, sender=model)

    def submit(self, model, requests=(), outcomes=(), **_):
        """Queue the answered requests of a batch: (key, values in the challenger's order)."""
        rows = [
            (request_.key, [request_.values[i] for i in self.order])
            for request_, outcome in zip(requests, outcomes, strict=True)
            if isinstance(outcome, dict)
        ]
        if not rows:
            return
        with self._lock:
            room = max(0, MAX_PENDING - len(self._pending))
            self._pending.extend(rows[:room])
            self._idle.clear()
            self._start_worker()
        if len(rows) > room:
            challenger_scored.send(self.challenger, scored=0, failed=0, skipped=len(rows) - room)
        self._wake.set()

    def wait_idle(self, timeout=10):
        """True once every queued row is scored and written (False after `timeout` s)."""
        return self._idle.wait(timeout)

    def _start_worker(self):
        if self._worker_pid == os.getpid():
            return
        self._worker_pid = os.getpid()
        worker = threading.Thread(target=self._work, name="challenger", daemon=True)
        worker.start()

    def _work(self):
        while True:
            self._wake.wait()
            time.sleep(GATHER_SECONDS)
            with self._lock:
                self._wake.clear()
                size = min(BATCH_ROWS, len(self._pending))
                batch = [self._pending.popleft() for _ in range(size)]
            try:
                self._shadow(batch)
            except Exception as error:  # the worker must outlive anything a batch does
                log.warning("challenger: %d rows not stored (%s)", len(batch), type(error).__name__)
                challenger_scored.send(self.challenger, scored=0, failed=len(batch), skipped=0)
            with self._lock:
                if self._pending:
                    self._wake.set()
                else:
                    self._idle.set()

    def _shadow(self, batch):
        if not batch:
            return
        values = [row for _, row in batch]
        if self.cooperative:  # a native thread: the worker's greenlets run meanwhile
            outputs = gevent.get_hub().threadpool.apply(score_rows, (values, self.challenger))
        else:
            outputs = score_rows(values, self.challenger)
        scored = [(key, out) for (key, _), out in zip(batch, outputs, strict=True) if out]
        if scored:
            self.store.in_transaction(lambda: self._write(scored))
            self.store.database.close()  # back to the pool: this thread keeps none
        failed = len(batch) - len(scored)
        challenger_scored.send(self.challenger, scored=len(scored), failed=failed, skipped=0)

    def _write(self, scored):
        """Each output beside its row: only a row of the model that answers, not shadowed
        yet (a retry is answered again, but its row is scored once). One UPDATE per 300
        rows (a CASE on the key): one statement, not one per row, holds SQLite's lock and
        PostgreSQL's round trips short."""
        table = self.store.table
        for start in range(0, len(scored), 300):
            chunk = scored[start : start + 300]
            outputs = Case(table.observation_key, [(key, json.dumps(out)) for key, out in chunk])
            table.update(
                challenger_version=self.challenger.version, challenger_prediction=outputs
            ).where(
                table.observation_key.in_([key for key, _ in chunk])
                & (table.model_version == self.model.version)
                & table.challenger_version.is_null()
            ).execute()


def score_rows(rows, challenger):
    """The challenger's output for each row (a dict, as tasks.py makes), or None where it
    failed: one call for all, row by row when that call raises, whatever it raises."""
    try:
        outputs = challenger.task.predict(challenger.pipeline, frame_of(rows, challenger))
    except Exception:
        if len(rows) == 1:
            return [None]
        return [score_rows([row], challenger)[0] for row in rows]
    return [output if all_finite(output) else None for output in outputs]
