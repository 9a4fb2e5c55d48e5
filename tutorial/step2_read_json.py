# tutorial/step2_read_json.py
"""Step 2: read the JSON body of the request and use one of its fields.

Still no model: a rule of thumb stands in for it (women were more likely to survive).
"""

import os

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/predict")
def predict():
    # The body {"id": ..., "observation": {...}}, parsed into Python dicts and lists.
    payload = request.get_json()
    observation = payload["observation"]
    proba = 0.7 if observation["Sex"] == "female" else 0.2
    return jsonify({"proba": proba})


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", 5000)))
