"""The plainest way to serve the same model, for benchmarks/throughput.py to compare with.

What a tutorial writes (README section 3, step 3, plus section 5's table): one request, one
DataFrame, one predict_proba call (predict, for a regressor), one insert. Served by
gunicorn's sync workers, on the artifacts of MODEL_DIR (default: the repository root):

    DATABASE_URL=sqlite:////tmp/one.db gunicorn --workers 2 --chdir benchmarks one_row_app:app
"""

import json
import os
import pickle
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import joblib
import pandas as pd
from flask import Flask, jsonify, request
from peewee import DateTimeField, DoubleField, Model, TextField
from playhouse.db_url import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # unpickling the pipeline imports custom_transformers

MODEL_DIR = Path(os.environ.get("MODEL_DIR") or ROOT)
columns = json.loads((MODEL_DIR / "columns.json").read_text())
with open(MODEL_DIR / "dtypes.pickle", "rb") as file:
    dtypes = pickle.load(file)
pipeline = joblib.load(MODEL_DIR / "pipeline.pickle")
CLASSIFIER = hasattr(pipeline, "predict_proba")
# A brief's contract, written by hand as students do: its route, its id, a flat body, and a
# decision at its threshold (examples/stop_and_search: POST /should_search/ -> {"outcome"}).
BRIEF = tomllib.loads(p.read_text()) if (p := MODEL_DIR / "api.toml").is_file() else {}
PATH = BRIEF.get("predict", {}).get("path", "/predict")
ID_FIELD = BRIEF.get("predict", {}).get("id", "id")
FLAT = BRIEF.get("predict", {}).get("observation", "observation") == ""
THRESHOLD = BRIEF.get("model", {}).get("threshold")

database = connect(os.environ["DATABASE_URL"])


class Prediction(Model):
    observation_id = TextField(unique=True)
    observation = TextField()
    answer = DoubleField()  # the probability of class 1, or a regressor's number
    created_at = DateTimeField()

    class Meta:
        database = database
        table_name = "one_row_prediction"  # beside the service's table, in the same database


database.create_tables([Prediction])
database.close()
app = Flask(__name__)


@app.post(PATH)
def predict():
    payload = request.get_json()
    observation = payload if FLAT else payload["observation"]
    values = [observation.get(column) for column in columns]
    values = [float("nan") if value is None else value for value in values]
    row = pd.DataFrame([values], columns=columns).astype(dtypes)
    if CLASSIFIER and THRESHOLD is not None:
        answer = {"outcome": bool(pipeline.predict_proba(row)[0, 1] >= THRESHOLD)}
    elif CLASSIFIER:
        answer = {"proba": float(pipeline.predict_proba(row)[0, 1])}
    else:
        answer = {"prediction": float(pipeline.predict(row)[0])}
    with database.connection_context():
        Prediction.create(
            observation_id=str(payload[ID_FIELD]),
            observation=request.get_data(as_text=True),
            answer=next(iter(answer.values())),
            created_at=datetime.now(UTC).replace(tzinfo=None),
        )
    response = jsonify(answer)
    # The benchmark checks that every answered id was stored: it reads the id back here.
    response.headers["X-Request-ID"] = request.headers.get("X-Request-ID", "")
    return response
