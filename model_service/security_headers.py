"""The headers every answer carries for browsers, and CORS for the origins you name.

    security_headers.init_app(app)   # CORS_ORIGINS: "https://brief.example,http://localhost:3000"

Every answer, errors included: `X-Content-Type-Options: nosniff` (a browser never reads
JSON as a script or a page) and `Referrer-Policy: same-origin` (no address of this service
is sent to other sites). The two pages keep their own Content-Security-Policy (pages.py:
nothing loaded from another origin, no framing), and the same two headers, which they set
first.

CORS is off unless CORS_ORIGINS names origins (scheme://host[:port], exactly as a browser
sends them; `*`: any origin). A request from one of them gets
`Access-Control-Allow-Origin`, and a browser's preflight (OPTIONS with
Access-Control-Request-Method) on any route is answered 204 with the methods of the route
and the headers a client sends (Content-Type, Authorization, X-API-Key, X-Request-ID),
before any key is asked for: a preflight carries none. No cookie ever authenticates a
request here, so no credentials are allowed: a page may call the API only with the key or
token its own code sends.
"""

import re

from flask import current_app, request

from model_service.errors import StartupError

EVERY_ANSWER = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
# What a browser's page may send and read besides the CORS-safelisted headers.
REQUEST_HEADERS = "Content-Type, Authorization, X-API-Key, X-Request-ID"
EXPOSED_HEADERS = "Retry-After, X-Request-ID, X-Treated-As-Missing, X-Export-Rows"
PREFLIGHT_SECONDS = 600  # how long a browser may reuse a preflight's answer
ORIGIN = re.compile(r"https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?")


def init_app(app):
    """Add the headers to every answer; with CORS_ORIGINS, answer the browsers it names."""
    origins = parse_origins(app.config["CORS_ORIGINS"])
    if origins:
        app.extensions["cors_origins"] = origins
        app.before_request(answer_preflight)
    app.after_request(add_headers)


def parse_origins(text):
    """'https://a.example, http://localhost:3000' -> frozenset; '*' -> {'*'}; unset -> empty."""
    origins = frozenset(origin.strip() for origin in (text or "").split(",") if origin.strip())
    if origins == {"*"}:
        return origins
    for origin in origins:
        if not ORIGIN.fullmatch(origin):
            raise StartupError(
                f"CORS_ORIGINS: {origin!r} is not an origin; write each as a browser sends it, "
                "in lower case, without a path or a final slash (https://brief.example, "
                "http://localhost:3000), separated by commas, or * alone for any origin."
            )
    return origins


def allowed_origin():
    """The Access-Control-Allow-Origin this request gets, or None."""
    origins = current_app.extensions.get("cors_origins")
    if not origins:
        return None
    if "*" in origins:
        return "*"
    origin = request.headers.get("Origin")
    return origin if origin in origins else None


def answer_preflight():
    if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
        return None
    if request.url_rule is None or allowed_origin() is None:
        return None  # Flask's own answer (a 404, or an OPTIONS without CORS): the browser stops
    methods = sorted(request.url_rule.methods - {"HEAD", "OPTIONS"})
    response = current_app.response_class(status=204)
    del response.headers["Content-Type"]  # no body
    response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
    response.headers["Access-Control-Allow-Headers"] = REQUEST_HEADERS
    response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_SECONDS)
    return response


def add_headers(response):
    for name, value in EVERY_ANSWER.items():
        response.headers.setdefault(name, value)  # a page's own (pages.py), if set, stays
    if current_app.extensions.get("cors_origins"):
        allowed = allowed_origin()
        if allowed is not None:
            response.headers["Access-Control-Allow-Origin"] = allowed
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if allowed != "*":  # the answer depends on the Origin: caches must keep them apart
            response.vary.add("Origin")
    return response
