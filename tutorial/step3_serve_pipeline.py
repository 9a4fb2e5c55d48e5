# tutorial/step3_serve_pipeline.py
"""Step 3: serve the real model, the pipeline pickled by notebook 1.

The three artifacts are loaded once, when the server starts; each request only predicts.
"""

import json
import os
import pickle
import sys
from pathlib import Path

import joblib
import pandas as pd
from flask import Flask, jsonify, request

# The repository root, one folder up: the artifacts and the custom_transformers package.
ROOT = Path(__file__).resolve().parent.parent
# Unpickling the pipeline imports custom_transformers, so Python must be able to find it.
sys.path.insert(0, str(ROOT))

with open(ROOT / "columns.json") as file:
    columns = json.load(file)  # the feature names, in training order
with open(ROOT / "dtypes.pickle", "rb") as file:
    dtypes = pickle.load(file)  # the dtype of each feature in training
pipeline = joblib.load(ROOT / "pipeline.pickle")

app = Flask(__name__)


@app.post("/predict")
def predict():
    observation = request.get_json()["observation"]
    # One row, with the training columns in the training order; null becomes NaN.
    values = [observation.get(column) for column in columns]
    values = [float("nan") if value is None else value for value in values]
    row = pd.DataFrame([values], columns=columns).astype(dtypes)
    # Column 1 of predict_proba: the probability of class 1 (survived).
    proba = float(pipeline.predict_proba(row)[0, 1])
    return jsonify({"proba": proba})


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", 5000)))
