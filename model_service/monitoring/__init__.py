"""Monitoring: how the model does in production, from the traffic the service stores.

    monitoring.init_app(app)   # in create_app: GET /stats, GET /metrics, and the counters

Both routes answer only with `Authorization: Bearer <ADMIN_TOKEN>`, like /list-db-contents.
Nothing else in the service knows the metrics: they listen to the signals the request's
steps send (signals.py).

Where to look:

* stats.py: `GET /stats`, the quality of one model version over the predictions whose true
  value arrived with /update, the versions present and the drift of every feature, in a
  time window or over every row; its docstring says what each key of the answer holds.
* reports.py: the quality per task (BinaryReport, MulticlassReport, RegressionReport): how
  each reads its stored rows, and the metrics, calibration and distribution it reports.
* drift.py: the training profile (notebook 1 writes it, the service reads it at start-up),
  its bins, the stored observations sorted into them, and the PSI.
* groups.py: `GET /stats?by=`, the quality per group; rules.py: api.toml's [stats] and the
  verdict of each rule; intervals.py: the 95 % interval of every figure (Wilson, bootstrap,
  Newcombe).
* comparison.py: the `challenger` of /stats (CHALLENGER_DIR): both models' metrics on the
  rows both scored, their paired differences with intervals, and a paired test.
* rollups.py: counts per hour (rows, labelled, drift bins, answers), written with the rows:
  /stats sums them instead of reading every row.
* window.py: which stored rows /stats reads, counted in SQL or streamed in chunks.
* metrics.py: `GET /metrics`, counters and histograms for Prometheus across every gunicorn
  worker, the timing of every request; the gauges of the rules, set by /stats?by=.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from model_service.database import DATABASE_ERRORS, unhurried
from model_service.errors import StartupError
from model_service.monitoring import metrics, stats
from model_service.monitoring.drift import load_profile
from model_service.monitoring.group_cells import GroupCells
from model_service.monitoring.groups import Groups
from model_service.monitoring.rollups import Rollups
from model_service.monitoring.rules import GroupsError

log = logging.getLogger("app")


@dataclass
class Monitoring:
    """What /stats needs, kept in app.extensions["monitoring"]."""

    profile: dict | None  # training_profile.json, when it was written for this model
    profile_note: str | None  # why there is no usable profile
    groups: Groups  # /stats?by=: the groups and the rules of api.toml [stats]
    rollups: Rollups  # the counts per hour that /stats sums (rollups.py)
    grouped: GroupCells  # /stats?by= on a declared grouping, from those counts


def init_app(app):
    """Register /stats and /metrics, time every request, and listen to the signals."""
    model = app.config["MODEL"]
    profile, note = load_profile(Path(app.config["MODEL_DIR"]), model)
    # Tests may pass the setting to create_app; else it comes from the environment.
    min_labelled = app.config.get("GROUP_MIN_LABELLED", os.environ.get("GROUP_MIN_LABELLED"))
    try:
        checked = Groups(model.contract.stats_settings or {}, min_labelled, model, profile, note)
    except GroupsError as error:
        raise StartupError(str(error)) from None
    grouped = GroupCells(checked, model)  # the declared groupings, counted as rows come
    rollups = Rollups(app.extensions["store"], model, profile, grouped)
    try:
        with unhurried():  # counting a table of millions of rows takes minutes
            done = rollups.upgrade()  # the counts of /stats: created, or filled from the rows
    except DATABASE_ERRORS as error:
        raise StartupError(f"Cannot reach the database to count the rows: {error}") from None
    finally:
        app.extensions["store"].discard_connections()  # gunicorn forks workers next
    if done:
        log.info("database upgraded: %s", done)
    app.extensions["monitoring"] = Monitoring(profile, note, checked, rollups, grouped)
    app.register_blueprint(stats.blueprint)
    metrics.init_app(app)
