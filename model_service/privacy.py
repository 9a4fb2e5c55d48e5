"""Personal data kept out of the store: api.toml's [store] drop and hash.

    privacy.init_app(app)                   # the store's StoredForm, or a StartupError
    form.text(body)                         # what a row stores of a /predict body
    form.same(stored_text, text, model)     # a retry? compared on the stored form

The model scores the values as the client sent them (parsing.py reads them first); only
what is written changes. A dropped field is removed from the body, and from the object of
its features; a hashed field's value becomes "hmac-sha256:<64 hex digits>", an HMAC-SHA256
keyed with STORE_SECRET over the value's canonical JSON (canonical_json: 3 and 3.0 are one
number, "3" is another value), so that equal values still group and join. A missing value
(null, NaN) stays as it is: that a field was missing is not personal. /export and
/list-db-contents show rows as stored, and /stats reads them so too (docs/your-brief.md).
"""

import hashlib
import hmac
import json
from dataclasses import dataclass

from model_service.errors import ApiError, StartupError
from model_service.parsing import check_observation
from model_service.values import is_missing

PREFIX = "hmac-sha256:"
MIN_SECRET = 32  # characters: a short key would let a guess of the key undo the hashes


def init_app(app):
    """Give the store api.toml's [store] form; STORE_SECRET is checked when it hashes."""
    contract = app.config["MODEL"].contract
    app.extensions["store"].stored_form = StoredForm.of(contract, app.config["STORE_SECRET"])


@dataclass(frozen=True)
class StoredForm:
    """How a /predict body is written: as sent, or without its dropped and hashed values."""

    drop: frozenset = frozenset()
    hash: frozenset = frozenset()
    key: bytes = b""
    observation_field: str = ""

    @classmethod
    def of(cls, contract, secret):
        if contract.stored_hash and len(secret or "") < MIN_SECRET:
            raise StartupError(
                f"api.toml [store] hash needs STORE_SECRET, at least {MIN_SECRET} random "
                'characters (python -c "import secrets; print(secrets.token_hex(32))"), kept '
                "for good: another secret hashes the same value differently."
            )
        return cls(
            frozenset(contract.stored_drop),
            frozenset(contract.stored_hash),
            (secret or "").encode(),
            contract.observation_field,
        )

    @property
    def private(self):
        """The fields that are never written as sent (empty: bodies are stored as sent)."""
        return self.drop | self.hash

    def text(self, body):
        """The text to store of a /predict body (the body itself, without private fields)."""
        if not self.private:
            return body
        payload = json.loads(body)  # read_json_body parsed it already: a JSON object
        stored = self.strip(payload)
        nested = payload.get(self.observation_field) if self.observation_field else None
        if isinstance(nested, dict):  # the features' object (contract.py never lets it be private)
            stored[self.observation_field] = self.strip(nested)
        return json.dumps(stored)

    def strip(self, fields):
        return {
            name: self.hashed(value) if name in self.hash else value
            for name, value in fields.items()
            if name not in self.drop
        }

    def hashed(self, value):
        if is_missing(value):
            return value
        message = canonical_json(value).encode()
        return PREFIX + hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def same(self, stored_text, text, model):
        """Whether two stored forms hold one observation: the features kept, as /predict
        reads them (3 and 3.0 alike); a hashed feature by its hash; a dropped one cannot be
        compared, so a retry that changes only a dropped feature is answered as a retry."""
        try:
            return self.comparable(stored_text, model) == self.comparable(text, model)
        except (ValueError, TypeError, RecursionError, ApiError):
            return False

    def comparable(self, text, model):
        payload = json.loads(text)
        observation = model.contract.observation_of(payload) if isinstance(payload, dict) else None
        values, _ = check_observation(observation, model)  # an ApiError when not an object
        kept = [
            observation.get(column) if column in self.private else value
            for column, value in zip(model.columns, values, strict=True)
        ]
        return json.dumps(kept)  # NaN written as NaN: two missing values compare equal


def canonical_json(value):
    """One text per JSON value: an integral number as an integer (3.0 -> 3), the keys of
    objects sorted, no spaces, characters as they are. Strings are not changed ("Ann" and
    "ann " are two values)."""
    return json.dumps(integral(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def integral(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [integral(item) for item in value]
    if isinstance(value, dict):
        return {name: integral(item) for name, item in value.items()}
    return value
