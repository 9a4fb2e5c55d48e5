"""Every setting the service reads from the environment, with its default (.env.example).

Settings come from environment variables (Railway's variables, or .env under make), so that
the same image runs anywhere; tests pass their own to create_app.
"""

import os
from pathlib import Path

from model_service.errors import StartupError

# The repository root: app.py, the artifacts, templates/ and static/.
ROOT = Path(__file__).resolve().parent.parent


def settings_from_environment():
    """Every setting the service reads, with its default (see .env.example)."""
    return {
        "DATABASE_URL": os.environ.get("DATABASE_URL") or "sqlite:///predictions.db",
        # The model folder that answers (the tutorial's at the root, or models/<name>), and
        # the one that scores every answer in its shadow, to compare (challenger.py).
        "MODEL_DIR": os.environ.get("MODEL_DIR") or str(ROOT),
        "CHALLENGER_DIR": os.environ.get("CHALLENGER_DIR") or None,
        "ADMIN_TOKEN": os.environ.get("ADMIN_TOKEN", ""),
        # API keys (api_keys.py): "name:key,name:key:*" or a file of such lines; unset: off,
        # anyone may score and label.
        "API_KEYS": os.environ.get("API_KEYS", ""),
        "API_KEYS_FILE": os.environ.get("API_KEYS_FILE", ""),
        "MAX_CONTENT_LENGTH": number_from_environment("MAX_REQUEST_BYTES", 64 * 1024, int),
        "DATABASE_TIMEOUT": number_from_environment("DATABASE_TIMEOUT", 5, float),
        "BATCH_MAX_SIZE": number_from_environment("BATCH_MAX_SIZE", 64, int),
        # Binary classifiers (tasks.py): the decision is probability >= THRESHOLD, for the
        # class POSITIVE_CLASS. Unset: 0.5, and the greater of the two labels (1, true).
        "THRESHOLD": number_from_environment("THRESHOLD", None, float),
        "POSITIVE_CLASS": os.environ.get("POSITIVE_CLASS") or None,
        # GET /stats?by= reads the window's rows: it stops after this many seconds (a 503)
        # rather than hold a worker that serves predictions too.
        "STATS_TIME_LIMIT": number_from_environment("STATS_TIME_LIMIT", 10, float),
        # The store (privacy.py, quota.py): STORE_SECRET keys the hashes of api.toml's
        # [store] hash; DATABASE_QUOTA_MB: the store's size at which /health warns (80 %)
        # and [store] when_full applies (100 %). Unset: no quota.
        "STORE_SECRET": os.environ.get("STORE_SECRET", ""),
        "DATABASE_QUOTA_MB": number_from_environment("DATABASE_QUOTA_MB", None, float),
        # POST /predict-batch (predict_batch.py): larger bodies than /predict's.
        "PREDICT_BATCH_MAX_BYTES": number_from_environment(
            "PREDICT_BATCH_MAX_BYTES", 4 * 1024 * 1024, int
        ),
        "PREDICT_BATCH_MAX_OBSERVATIONS": number_from_environment(
            "PREDICT_BATCH_MAX_OBSERVATIONS", 1000, int
        ),
        # Refusing at once (rate_limits.py): RATE_LIMIT "600/minute" per API key or client
        # address (TRUSTED_PROXIES: the proxies in front whose X-Forwarded-For is believed;
        # Railway: 1); MAX_QUEUED_PREDICTIONS: /predict answers 503 past that many waiting.
        # Browsers (security_headers.py): CORS_ORIGINS, the origins whose pages may call.
        "RATE_LIMIT": os.environ.get("RATE_LIMIT") or None,
        "TRUSTED_PROXIES": number_from_environment("TRUSTED_PROXIES", 0, int),
        "MAX_QUEUED_PREDICTIONS": number_from_environment("MAX_QUEUED_PREDICTIONS", None, int),
        "CORS_ORIGINS": os.environ.get("CORS_ORIGINS") or None,
    }


def number_from_environment(name, default, convert):
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return convert(text)
    except ValueError:
        raise StartupError(f"The environment variable {name}={text!r} must be a number.") from None
