"""The two errors of the service, and the one JSON error handler that answers them all.

StartupError: something that must be fixed before the service can start (one sentence).
ApiError: a request the service refuses; it becomes {"error": message} with its status
(and the headers of with_headers: a 401's WWW-Authenticate).
register_error_handlers(app): every error of the API is JSON, never an HTML page or a
traceback: Flask's own (404, 405, 413), the database's (503), and the unexpected (500).
"""

import logging

from flask import current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from model_service.batching import BatchAbandoned, BatchTimeout
from model_service.database import DATABASE_ERRORS
from model_service.signals import database_unavailable

log = logging.getLogger("app")


class StartupError(Exception):
    """Something that must be fixed before the service can start."""


class ApiError(Exception):
    """A request the service must refuse; becomes {"error": message} with the status."""

    def __init__(self, status, message, /, **extra):  # extra may hold a key "status" too
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra
        self.headers = {}

    def with_headers(self, headers):
        """This error, answered with these headers too (a 401's WWW-Authenticate). Not an
        argument of __init__: its keywords are the body's (a 409's answer may hold any)."""
        self.headers = dict(headers)
        return self


def register_error_handlers(app):
    @app.errorhandler(ApiError)
    def api_error(error):
        body = {"error": error.message, **error.extra}  # a 409 adds the answer it would give
        body["error"] = error.message  # first, and never hidden by an answer key "error"
        return jsonify(body), error.status, error.headers

    @app.errorhandler(HTTPException)
    def http_error(error):  # 404, 405, 413 ... raised by Flask itself
        messages = {
            404: f"Not found: {request.path}",
            405: f"Method {request.method} is not allowed for {request.path}",
            413: f"Request body is larger than {request.max_content_length} bytes",
        }
        response = jsonify(error=messages.get(error.code, error.description))
        response.status_code = error.code
        if error.code == 405:
            response.headers["Allow"] = ", ".join(error.valid_methods or [])
        return response

    def database_error(error):
        log.warning("request %s: database unavailable: %s", g.get("request_id"), error)
        database_unavailable.send(current_app._get_current_object(), error=error)
        return retry_later("The database is unavailable; retry in a few seconds")

    for error_class in DATABASE_ERRORS:
        app.register_error_handler(error_class, database_error)

    @app.errorhandler(BatchTimeout)
    @app.errorhandler(BatchAbandoned)
    def not_scored(error):  # batches stuck behind a slow database, or one that was killed
        log.warning("request %s: not scored: %s", g.get("request_id"), error)
        return retry_later("The service could not score this request in time; retry it")

    @app.errorhandler(Exception)
    def unexpected_error(error):
        log.exception("request %s failed", g.get("request_id"))
        return jsonify(error=f"Internal server error (request id {g.get('request_id')})"), 500


def retry_later(message):
    response = jsonify(error=message)
    response.headers["Retry-After"] = "1"
    return response, 503
