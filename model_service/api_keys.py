"""API keys: who may score and label, when the service is open on the internet.

    API_KEYS="partner-a:<key>,partner-b:<key>,ops:<key>:*"   # or API_KEYS_FILE, one a line
    api_keys.init_app(app)   # after the routes: POST /predict, /update, /predict-batch guarded

With API_KEYS (or API_KEYS_FILE) set, the routes that score or label (the brief's own paths
too: they are the same endpoints) answer only requests that carry one of the keys, as
`Authorization: Bearer <key>` or `X-API-Key: <key>` (X-API-Key wins when both are sent).
Without one, with another scheme (Basic...), or with a key that is not configured: 401,
{"error": ...} and `WWW-Authenticate: Bearer realm="predictions"`. Unset: no key is needed,
as before. The admin token (ADMIN_TOKEN) is not a key, and a key opens no admin route.

An entry is `name:key`, or `name:key:*` for a key that may label every row. The name
(letters, digits, - _ .) is what the rows store, in the column api_key_name, and what
GET /export?api_key_name=<name> and GET /stats?api_key_name=<name> select; the key is at
least 16 printable characters without spaces, `:` or `,` (`openssl rand -hex 32` makes
one). Start-up refuses a malformed entry, a repeated name or key, and both variables at
once, naming the entry's position: never the key.

POST /update labels a row only for the key that wrote it; another key gets 403 (the id's
existence is no secret: /predict's 409 tells it too). Rows written while keys were off
(api_key_name NULL), and every row, may be labelled by a key marked `*`.

The offered key is compared, in constant time, with every configured key: each is reduced
to its SHA-256 digest, and hmac.compare_digest compares the digests, all of them, so the
time taken depends neither on how much of a key matched nor on which key it was. Keys are
never logged nor stored: only their names.
"""

import hashlib
import hmac
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from flask import current_app, g, request

from model_service.errors import ApiError, StartupError
from model_service.parsing import parse_id, read_body
from model_service.store import current_store

# The endpoints that score or label: app.py's predict and update (add_route names them after
# their views, whatever path api.toml gives them), and predict_batch.py's.
GUARDED = ("predict", "update", "predict_batch")
NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
KEY = re.compile(r"[!-~]{16,}")  # printable ASCII, no space; ":" and "," are refused apart
ALL_ROWS = "*"
CHALLENGE = 'Bearer realm="predictions"'


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes  # SHA-256 of the key: every digest has the same length
    all_rows: bool  # marked *: may label every row


class ApiKeys:
    """The configured keys; find(offered) is the key it matches, or None."""

    def __init__(self, keys):
        self.keys = tuple(keys)

    def find(self, offered):
        """The ApiKey whose key is `offered`, or None, in a time that depends on neither."""
        digest = digest_of(offered)
        found = None
        for key in self.keys:  # no early exit: every key is compared
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


def digest_of(text):
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


# ---------------------------------------------------------------------------------------
# Start-up: the keys from API_KEYS or API_KEYS_FILE
# ---------------------------------------------------------------------------------------


def keys_from_settings(settings):
    """ApiKeys from settings' API_KEYS or API_KEYS_FILE, None when both are unset."""
    text, path = settings.get("API_KEYS", "").strip(), settings.get("API_KEYS_FILE", "")
    if text and path:
        raise StartupError("Set API_KEYS or API_KEYS_FILE, not both.")
    if text:
        return parse_keys([(f"entry {n} of API_KEYS", e) for n, e in enumerate(text.split(","), 1)])
    if not path:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise StartupError(f"API_KEYS_FILE={path} cannot be read ({error}).") from None
    entries = [
        (f"line {number} of API_KEYS_FILE", line)
        for number, line in enumerate(lines, start=1)
        if line.strip() and not line.strip().startswith("#")
    ]
    if not entries:
        raise StartupError(f"API_KEYS_FILE={path} holds no key (one name:key a line).")
    return parse_keys(entries)


def parse_keys(entries):
    """ApiKeys from [(where, "name:key" or "name:key:*")]; a StartupError names `where`."""
    keys, names, digests = [], {}, {}
    for where, entry in entries:
        key = parse_entry(where, entry.strip())
        if key.name in names:
            raise StartupError(f"The {where} repeats the name of the {names[key.name]}.")
        if key.digest in digests:
            raise StartupError(f"The {where} repeats the key of the {digests[key.digest]}.")
        keys.append(key)
        names[key.name], digests[key.digest] = where, where
    return ApiKeys(keys)


def parse_entry(where, entry):
    """One ApiKey; the error's sentence says what is wrong, never what the key is."""
    name, _, rest = entry.partition(":")
    secret, _, mark = rest.partition(":")
    if not NAME.fullmatch(name):
        raise StartupError(
            f"The {where} is not name:key (or name:key:*): its name must be 1 to 64 "
            "letters, digits, -, _ or ."
        )
    if mark not in ("", ALL_ROWS) or not KEY.fullmatch(secret) or "," in secret:
        raise StartupError(
            f"The {where} has no valid key after its name: at least 16 printable characters "
            "without spaces, : or , (openssl rand -hex 32 makes one), then :* or nothing."
        )
    return ApiKey(name, digest_of(secret), all_rows=mark == ALL_ROWS)


# ---------------------------------------------------------------------------------------
# Requests: the key they carry
# ---------------------------------------------------------------------------------------


def init_app(app):
    """Read the keys (StartupError on a bad one); with keys, guard the GUARDED endpoints."""
    keys = app.extensions["api_keys"] = keys_from_settings(app.config)
    if keys is not None:
        app.before_request(require_key)


def require_key():
    """The request's key (401 without a valid one), kept in g for the row it writes."""
    if request.endpoint not in GUARDED or request.method == "OPTIONS":
        return
    offered_key()  # a 401 that says how to send a key, when there is none
    key = request_key()
    if key is None:
        raise unauthorized("The API key is not valid", error="invalid_token")
    g.api_key_name = key.name  # parsing.parse_prediction_request stores it with the row
    if request.endpoint == "update" and not key.all_rows:
        check_owner(key)


def request_key():
    """The configured key the request carries, or None (keys off, no key, a wrong one).

    Looked up once a request: rate_limits.py asks first, to count the request against its
    key's name, or against its address when it has no valid key (a 401 is counted too)."""
    keys = current_app.extensions.get("api_keys")
    if keys is None:
        return None
    if "api_key" not in g:
        try:
            g.api_key = keys.find(offered_key())
        except ApiError:  # no key, or another scheme
            g.api_key = None
    return g.api_key


def offered_key():
    """The key the request carries: X-API-Key, else Authorization's Bearer; else a 401."""
    given = request.headers.get("X-API-Key")
    if given is not None:
        return given.strip()
    authorization = request.headers.get("Authorization")
    if authorization is None:
        raise unauthorized(
            "This route needs an API key: send Authorization: Bearer <key> or X-API-Key: <key>"
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise unauthorized("Send the API key as Authorization: Bearer <key> (or X-API-Key)")
    return token.strip()


def unauthorized(message, error=None):
    challenge = CHALLENGE if error is None else f'{CHALLENGE}, error="{error}"'
    return ApiError(401, message).with_headers({"WWW-Authenticate": challenge})


def check_owner(key):
    """403 when the /update's row was written by another key (or before keys were on).

    The body is read here, then handed back to the view as it was; a body the view refuses
    (400, 422), and an id that is not stored (404), are left to the view's answer. The owner
    of a row never changes once it is written, so the view may label it after this check.
    """
    raw = read_body(request.max_content_length)  # 413, as the view would answer
    request.stream = io.BytesIO(raw)  # the view reads the same body again
    try:
        payload = json.loads(raw.decode("utf-8"))
        row_key, _ = parse_id(payload, current_app.config["MODEL"])
    except (ValueError, RecursionError, TypeError, AttributeError, ApiError):
        return
    store = current_store()
    table = store.table
    query = table.select(table.api_key_name).where(table.observation_key == row_key)
    found = store.in_transaction(lambda: query.tuples().first())
    if found is None or found[0] == key.name:
        return
    written_by = "another API key" if found[0] is not None else "no key (before API keys)"
    raise ApiError(
        403,
        f"Observation ID {row_key} was stored by {written_by}: only the key that wrote it, "
        "or a key marked * in API_KEYS, may label it",
    )
