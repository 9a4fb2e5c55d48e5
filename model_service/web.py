"""Flask helpers every route shares: request ids, the admin token, a query's integers, POST
routes served with and without the final slash, and a list of names as a header."""

import hmac
import uuid
from urllib.parse import quote

from flask import current_app, g, request

from model_service.errors import ApiError
from model_service.values import parse_integer


def tag_requests(app):
    """Every request gets an id (the client's X-Request-ID, or a new one), logged and echoed."""

    @app.before_request
    def tag_request():
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if given.isalnum() and len(given) <= 64 else uuid.uuid4().hex

    @app.after_request
    def add_request_id(response):
        response.headers["X-Request-ID"] = g.get("request_id", "")
        return response


def require_admin():
    """A 404, as if the route did not exist, unless the request carries the admin token.

    The admin routes show personal data (the stored observations): without ADMIN_TOKEN
    set they are off. The token is compared in constant time.
    """
    token = current_app.config["ADMIN_TOKEN"]
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not token or not hmac.compare_digest(offered.encode(), token.encode()):
        raise ApiError(404, f"Not found: {request.path}")


def query_integer(name, default, low=-(2**63), high=2**63 - 1):
    """An integer from the query string (?name=...), or a 422 naming it."""
    text = request.args.get(name)
    if text is None:
        return default
    try:
        return parse_integer(int(text), name, low, high)
    except ValueError:
        raise ApiError(422, f"{name} must be an integer from {low} to {high}") from None


def add_route(app, path, view):
    """A POST route served with and without the final slash, as briefs write it both ways."""
    for rule in (path, path + "/"):
        app.add_url_rule(rule, view.__name__, view, methods=["POST"])


# What a header may hold as it is: printable ASCII, but the list's comma and the escape's %.
HEADER_SAFE = "".join(chr(code) for code in range(32, 127) if chr(code) not in "%,")


def header_list(names):
    """Field names as a header's list: "Age, Fare" (any other character %-escaped)."""
    return ", ".join(quote(name, safe=HEADER_SAFE) for name in names)
