"""GET /health: whether the service can answer, and what it serves.

The database is reached (SELECT 1) on every call: a load balancer, Railway's health check
and the clients (smoke_check.py, score_csv.py) read it; 503 while the database is down. It
also says what a client needs to speak the model: its task, columns and contract, and how
full the store is (quota.py: rows, bytes, and DATABASE_QUOTA_MB's state).
"""

import logging

from flask import Blueprint, current_app, jsonify

from model_service.artifacts import LIBRARY_VERSIONS
from model_service.challenger import folder_name
from model_service.database import DATABASE_ERRORS
from model_service.store import current_store

log = logging.getLogger("app")
health = Blueprint("health", __name__)


def init_app(app):
    app.register_blueprint(health)


@health.get("/health")
def report_health():
    model, store = current_app.config["MODEL"], current_store()
    try:
        store.in_transaction(lambda: store.database.execute_sql("SELECT 1"))
        database_status = "ok"
    except DATABASE_ERRORS as error:
        log.warning("health check: database unavailable: %s", type(error).__name__)
        database_status = "unavailable"
    body = {
        "status": "ok" if database_status == "ok" else "unavailable",
        "database": {"engine": type(store.database.obj).__name__, "status": database_status},
        # Measured at most every few seconds (quota.py); the last measure while it is down.
        "store": store.quota.report(measure=database_status == "ok"),
        "model": {
            "version": model.version,
            "folder": folder_name(current_app.config["MODEL_DIR"]),
            **model.task.describe(),  # task, and its classes, threshold... or targets
            "columns": model.columns,
            "dtypes": {column: str(dtype) for column, dtype in model.dtypes.items()},
        },
        "contract": model.contract.describe(model.task),  # the routes and fields it speaks
        "challenger": describe_challenger(current_app.config.get("CHALLENGER")),
        "versions": LIBRARY_VERSIONS,
    }
    if database_status != "ok":
        return jsonify(error="The database is unavailable", **body), 503
    return jsonify(body)


def describe_challenger(challenger):
    """CHALLENGER_DIR's model, scoring in the shadow (challenger.py), or None."""
    if challenger is None:
        return None
    return {
        "version": challenger.version,
        "folder": folder_name(current_app.config["CHALLENGER_DIR"]),
        **challenger.task.describe(),
    }
