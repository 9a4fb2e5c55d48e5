# tutorial/step1_always_half.py
"""Step 1: a web server that answers every prediction request with 0.5.

Run it with `python tutorial/step1_always_half.py`, then send it a request with curl.
"""

import os

from flask import Flask, jsonify

# The application: it maps URLs to Python functions.
app = Flask(__name__)


# POST /predict runs this function; what it returns is the HTTP response.
@app.post("/predict")
def predict():
    # jsonify turns a Python dict into a JSON response (Content-Type: application/json).
    return jsonify({"proba": 0.5})


if __name__ == "__main__":
    # Flask's development server, on http://localhost:5000 (or the port in $PORT).
    app.run(port=int(os.environ.get("PORT", 5000)))
