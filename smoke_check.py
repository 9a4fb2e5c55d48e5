"""Check a deployed prediction service before anyone else calls it.

    python smoke_check.py https://my-app.up.railway.app
    make smoke URL=https://my-app.up.railway.app

It sends a handful of requests, the way real clients will, and prints a checklist: one
PASS or FAIL line per check, and under each FAIL what to fix. The exit code is 0 only when
every check passed, so a script (or CI) can rely on it.

It reads the model's task from /health and checks the answers that task gives: a binary
classifier's `proba` (a number from 0 to 1), a multiclass classifier's `label` (one of its
classes) and `probabilities` (adding up to 1), a regressor's `prediction` (a number, or one
per target).

What it does to your database: it stores ONE prediction, under a random id between 10**12
and 2**62 (far above the ids clients normally use), and sends its true outcome to /update:
the positive class of a binary classifier, or the prediction itself for the other tasks
(`true_class` for classifiers, `true_value` for regressors).

Only the standard library is used, so any Python 3.11+ runs it, without the project's
requirements.
"""

import argparse
import json
import math
import random
import sys
import urllib.error
import urllib.parse
import urllib.request

# The Titanic passenger used in the README. Another model needs its own observation:
# pass it with --observation '{"column": value, ...}' (the columns are listed by /health).
DEFAULT_OBSERVATION = {
    "Pclass": 2,
    "Sex": "female",
    "Age": 27.0,
    "SibSp": 0,
    "Parch": 0,
    "Fare": 13.0,
    "Cabin": None,
    "Embarked": "S",
}

LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "::1")

# The checklist, in the order it runs.
HEALTH = "GET /health answers 200 with status ok"
FITS = "the observation has every column the model expects"
PREDICT = "POST /predict answers the model's prediction"
RETRY = "the same request again gets the same answer"
CONFLICT = "the same id with another observation answers 409"
UPDATE = "POST /update stores the true outcome"
UNKNOWN = "POST /update of an unknown id answers 404"
NOT_JSON = "a body that is not JSON answers 400"
INVALID = "an observation with a wrongly typed value answers 422"
CHECKS = [HEALTH, FITS, PREDICT, RETRY, CONFLICT, UPDATE, UNKNOWN, NOT_JSON, INVALID]


class Response:
    """What came back: a status and a body, or the reason nothing came back."""

    def __init__(self, status=None, body=b"", headers=None, problem=None):
        self.status, self.body, self.headers, self.problem = status, body, headers or {}, problem

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def describe(self):
        if self.problem:
            return self.problem
        text = self.body.decode("utf-8", errors="replace").strip().replace("\n", " ")
        return f"HTTP {self.status}: {text[:200] or '(empty body)'}"


class Client:
    def __init__(self, base_url, timeout):
        self.base_url, self.timeout = base_url, timeout

    def request(self, method, path, body=None):
        data = None
        headers = {"Accept": "application/json", "User-Agent": "smoke_check.py"}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return Response(answer.status, answer.read(), dict(answer.headers))
        except urllib.error.HTTPError as error:  # 4xx and 5xx still carry a body
            with error:
                return Response(error.code, error.read(), dict(error.headers))
        except TimeoutError:
            return Response(problem=f"no answer within {self.timeout:g} s")
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                return Response(problem=f"no answer within {self.timeout:g} s")
            return Response(problem=f"cannot connect: {error.reason}")
        except (ConnectionError, OSError) as error:
            return Response(problem=f"connection failed: {error}")


class Checklist:
    def __init__(self, out):
        self.out, self.passed, self.failed = out, 0, 0

    def passes(self, name, detail=""):
        self.passed += 1
        print(f"PASS  {name}" + (f" ({detail})" if detail else ""), file=self.out)

    def fails(self, name, problem, fix):
        self.failed += 1
        print(f"FAIL  {name}\n      got: {problem}\n      fix: {fix}", file=self.out)

    def warns(self, name, advice):
        print(f"WARN  {name}\n      {advice}", file=self.out)

    def skips(self, name, reason):
        self.failed += 1  # a check that could not run is not a pass
        print(f"SKIP  {name} ({reason})", file=self.out)


def fix_for_unreachable(response):
    """Advice for a service that does not answer, by what came back."""
    if response.problem:
        return (
            "check the URL (Railway: service > Settings > Networking > Generate Domain), "
            "then read the deploy logs (railway logs): did gunicorn start?"
        )
    if response.status == 502:
        return (
            "the platform reached no running app: it crashed or does not listen on $PORT; "
            "read the deploy logs (railway logs)"
        )
    if response.status == 503:
        return "the app cannot reach its database: check DATABASE_URL and the database service"
    if response.status == 404:
        return "this URL serves something else than app.py: check the domain and the service"
    return "read the deploy logs (railway logs) for the error behind this answer"


def field(response, key):
    """body[key] when the body is a JSON object, else None."""
    body = response.json()
    return body.get(key) if isinstance(body, dict) else None


def is_error_body(response):
    return isinstance(field(response, "error"), str)


def is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_probability(value):
    return is_number(value) and 0 <= value <= 1


# ---------------------------------------------------------------------------------------
# The model's task, as /health reports it, and the answers it gives
# ---------------------------------------------------------------------------------------

TRUTH_FIELDS = {"binary": "true_class", "multiclass": "true_class", "regression": "true_value"}


def task_of(model):
    """The task /health names; a service from before any task answered a binary proba."""
    return model.get("task") or "binary"


def json_key(label):
    """A class as the service names it in `probabilities` (tasks.json_key): 1 -> "1"."""
    return label if isinstance(label, str) else json.dumps(label)


def json_kind(value):
    return bool if isinstance(value, bool) else str if isinstance(value, str) else float


def same_class(value, label):
    """Equal and of the same JSON kind: neither true nor "1" is the class 1."""
    return json_kind(value) is json_kind(label) and value == label


def binary_problem(body, model):
    if not is_probability(body.get("proba")):
        return "no proba from 0 to 1"
    return None


def multiclass_problem(body, model):
    classes = model.get("classes") or []
    if not any(same_class(body.get("label"), label) for label in classes):
        return f"the label {json.dumps(body.get('label'))} is not one of {json.dumps(classes)}"
    probabilities = body.get("probabilities")
    keys = sorted(json_key(label) for label in classes)
    if not isinstance(probabilities, dict) or sorted(probabilities) != keys:
        return f"probabilities must have one entry per class: {', '.join(keys)}"
    values = list(probabilities.values())
    if not all(is_probability(value) for value in values) or abs(sum(values) - 1) > 1e-6:
        return "the probabilities must be from 0 to 1 and add up to 1"
    return None


def regression_problem(body, model):
    prediction, targets = body.get("prediction"), model.get("targets") or []
    if len(targets) <= 1:  # one number, named by targets.json or not
        return None if is_number(prediction) else "the prediction is not a finite number"
    if (
        not isinstance(prediction, dict)
        or sorted(prediction) != sorted(targets)
        or not all(is_number(value) for value in prediction.values())
    ):
        return f"the prediction must hold a finite number for each target: {', '.join(targets)}"
    return None


ANSWER_PROBLEMS = {
    "binary": binary_problem,
    "multiclass": multiclass_problem,
    "regression": regression_problem,
}
ANSWER_KEYS = {
    "binary": ["proba"],
    "multiclass": ["label", "probabilities"],
    "regression": ["prediction"],
}


def answer_problem(response, model):
    """What is wrong with the answer for this task, or None when it is right."""
    body = response.json()
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    return ANSWER_PROBLEMS[task_of(model)](body, model)


def answer_of(body, model):
    """The task's answer in a body (a 409 carries an error too)."""
    return {key: body.get(key) for key in ANSWER_KEYS[task_of(model)]}


def in_short(answer, model):
    """The answer on one line: a multiclass one without the probabilities of every class."""
    if task_of(model) == "multiclass":
        label = answer["label"]
        probability = answer["probabilities"][json_key(label)]
        return f"label {json.dumps(label)}, with the probability {probability:.4f}"
    return ", ".join(f"{key} {json.dumps(value)}" for key, value in answer.items())


def some_truth(model):
    """A valid true outcome, for /update of an id that does not exist."""
    task = task_of(model)
    if task == "regression":
        targets = model.get("targets") or []
        return dict.fromkeys(targets, 0.0) if len(targets) > 1 else 0.0
    classes = model.get("classes") or [0, 1]
    return model.get("positive_class", classes[-1]) if task == "binary" else classes[0]


def truth_for(answer, model):
    """What /update is sent: the positive class, or the prediction itself (a valid value)."""
    task = task_of(model)
    if task == "binary":
        return some_truth(model)
    return answer["label"] if task == "multiclass" else answer["prediction"]


def fresh_id(used=()):
    while True:
        candidate = random.randrange(10**12, 2**62)
        if candidate not in used:
            return candidate


def changed_copy(observation):
    """The same observation with one value changed, still valid: for the conflict check."""
    changed = dict(observation)
    for kind in (float, int):
        for key, value in observation.items():
            if type(value) is kind:
                changed[key] = value + 1
                return changed
    for key, value in observation.items():
        if isinstance(value, str):
            changed[key] = None  # a missing value: the pipeline's imputer handles it
            return changed
    return None


def wrongly_typed_copy(observation):
    """The observation with a number replaced by text: the service must refuse it (422)."""
    for key, value in observation.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {**observation, key: "not a number"}
    return None


def run(base_url, observation, observation_given, timeout, out):
    client = Client(base_url, timeout)
    check = Checklist(out)
    print(f"Smoke check of {base_url}\n", file=out)

    # 1. /health: the app runs, loaded its model and reaches its database.
    health = client.request("GET", "/health")
    body = health.json() if health.status == 200 else None
    model = body.get("model", {}) if isinstance(body, dict) else {}
    if isinstance(body, dict) and body.get("status") == "ok":
        engine = body.get("database", {}).get("engine", "?")
        check.passes(HEALTH, f"database: {engine}")
        host = urllib.parse.urlsplit(base_url).hostname or ""
        if "Sqlite" in engine and host not in LOCAL_HOSTS:
            check.warns(
                "the deployed app stores predictions in SQLite",
                "the file lives in the container and is lost on every redeploy: add "
                "PostgreSQL and set DATABASE_URL (README: Deploying to Railway).",
            )
    else:
        check.fails(HEALTH, health.describe(), fix_for_unreachable(health))
        for name in CHECKS[1:]:
            check.skips(name, "needs a healthy /health")
        return finish(check, out)

    # 2. The observation must fit the deployed model, and this script know its task.
    columns = model.get("columns") or []
    missing = [column for column in columns if column not in observation]
    if task_of(model) not in ANSWER_PROBLEMS:
        check.fails(
            FITS,
            f"the model's task is {task_of(model)!r}",
            "this smoke_check.py knows binary, multiclass and regression models: use the "
            "smoke_check.py of the service's own release",
        )
        for name in CHECKS[2:]:
            check.skips(name, "needs a task this script knows")
        return finish(check, out)
    if missing:
        fix = (
            "pass an observation for your model: --observation '{\"column\": value, ...}' "
            f"with the columns {columns}"
        )
        if not observation_given:
            fix = "the default observation is the Titanic example; " + fix
        check.fails(FITS, f"it lacks {missing}", fix)
        for name in [PREDICT, RETRY, CONFLICT, UPDATE]:
            check.skips(name, "needs an observation for this model")
    else:
        check.passes(FITS, f"{len(columns)} columns, a {task_of(model)} model")
        check_predictions(client, check, observation, model)

    check_refusals(client, check, observation, model)
    return finish(check, out)


def check_refusals(client, check, observation, model):
    """Requests the service must refuse, and say why, without storing anything."""
    field_name = TRUTH_FIELDS[task_of(model)]
    unknown = {"id": fresh_id(), field_name: some_truth(model)}
    answer = client.request("POST", "/update", unknown)
    if answer.status == 404 and is_error_body(answer):
        check.passes(UNKNOWN, answer.json()["error"])
    else:
        check.fails(
            UNKNOWN,
            answer.describe(),
            '/update must answer 404 {"error": ...} for an id it never predicted',
        )

    answer = client.request("POST", "/predict", b'{"id": ')
    if answer.status == 400 and is_error_body(answer):
        check.passes(NOT_JSON, answer.json()["error"])
    else:
        check.fails(
            NOT_JSON,
            answer.describe(),
            'read_json_body() in app.py must turn invalid JSON into 400 {"error": ...}',
        )

    bad = wrongly_typed_copy(observation)
    bad_body = {"id": fresh_id(), "observation": bad if bad is not None else ["not", "an object"]}
    answer = client.request("POST", "/predict", bad_body)
    if answer.status == 422 and is_error_body(answer):
        check.passes(INVALID, answer.json()["error"])
    else:
        check.fails(
            INVALID,
            answer.describe(),
            "validate_observation() in app.py must refuse a value of the wrong type with 422",
        )


def check_predictions(client, check, observation, model):
    """A prediction, its retry, a conflicting repeat and an update, all on a fresh id."""
    observation_id = fresh_id()
    request_body = {"id": observation_id, "observation": observation}
    first = client.request("POST", "/predict", request_body)
    problem = answer_problem(first, model) if first.status == 200 else first.describe()
    if problem is None:
        answer = answer_of(first.json(), model)
        check.passes(PREDICT, f"id {observation_id}: {in_short(answer, model)}")
    else:
        fix = "read the deploy logs (railway logs): the error is logged with its request id"
        if first.status == 422:
            fix = "the observation does not suit the model: fix --observation"
        elif first.status == 200:
            keys = " and ".join(ANSWER_KEYS[task_of(model)])
            fix = f"a {task_of(model)} model answers {keys} (openapi.yaml: Answer)"
        check.fails(PREDICT, problem, fix)
        for name in [RETRY, CONFLICT, UPDATE]:
            check.skips(name, "needs a stored prediction")
        return

    retry = client.request("POST", "/predict", request_body)
    if retry.status == 200 and retry.json() == first.json():
        check.passes(RETRY)
    else:
        check.fails(
            RETRY,
            retry.describe(),
            "a retry (same id, same observation) must answer 200 with the stored answer: "
            "clients resend after a timeout",
        )

    check_conflict(client, check, observation_id, observation, model)
    check_update(client, check, observation_id, answer, model)


def check_conflict(client, check, observation_id, observation, model):
    changed = changed_copy(observation)
    if changed is None:
        check.skips(CONFLICT, "no value to change")
        return
    conflict = client.request("POST", "/predict", {"id": observation_id, "observation": changed})
    refused = conflict.status == 409 and is_error_body(conflict)
    if refused and answer_problem(conflict, model) is None:
        check.passes(CONFLICT, conflict.json()["error"])
    else:
        keys = ", ".join(f'"{key}": ...' for key in ANSWER_KEYS[task_of(model)])
        check.fails(
            CONFLICT,
            conflict.describe(),
            "a reused id with a different observation must answer 409 "
            f'{{"error": ..., {keys}}} and leave the stored row alone',
        )


def check_update(client, check, observation_id, answer, model):
    field_name, truth = TRUTH_FIELDS[task_of(model)], truth_for(answer, model)
    update = client.request("POST", "/update", {"id": observation_id, field_name: truth})
    body = update.json() if update.status == 200 else None
    if (
        isinstance(body, dict)
        and body.get("observation_id") == observation_id
        and body.get(field_name) == truth
        and (task_of(model) != "binary" or body.get("proba") == answer["proba"])
    ):
        check.passes(UPDATE, f"{field_name} {json.dumps(truth)}")
    else:
        check.fails(
            UPDATE,
            update.describe(),
            f"/update must answer 200 with the stored row: observation_id, {field_name}"
            + (", proba" if task_of(model) == "binary" else ""),
        )


def finish(check, out):
    total = check.passed + check.failed
    print(f"\n{check.passed} of {total} checks passed.", file=out)
    if check.failed:
        print("Fix the FAIL lines above, redeploy, and run this again.", file=out)
        return 1
    print("The service is ready for its clients.", file=out)
    return 0


def normalize_url(text):
    """'my-app.up.railway.app' -> 'https://my-app.up.railway.app' (no trailing slash)."""
    text = text.strip().rstrip("/")
    if "://" not in text:
        host = text.split("/")[0].split(":")[0]
        text = ("http://" if host in LOCAL_HOSTS else "https://") + text
    return text


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description="Check a deployed prediction service and print what to fix.",
        epilog="Example: python smoke_check.py https://my-app.up.railway.app",
    )
    parser.add_argument(
        "url", help="the base URL of the service, e.g. https://my-app.up.railway.app"
    )
    parser.add_argument(
        "--timeout", type=float, default=15, help="seconds to wait for each answer (default 15)"
    )
    parser.add_argument(
        "--observation",
        help="a JSON object with one value per column of YOUR model "
        "(default: the Titanic passenger of the README)",
    )
    arguments = parser.parse_args(argv)
    if arguments.observation is not None:
        try:
            observation = json.loads(arguments.observation)
        except ValueError as error:
            parser.error(f"--observation is not valid JSON: {error}")
        if not isinstance(observation, dict):
            parser.error('--observation must be a JSON object: {"column": value, ...}')
        arguments.observation = observation
    if arguments.timeout <= 0:
        parser.error("--timeout must be a positive number of seconds")
    return arguments


def main(argv=None, out=sys.stdout):
    arguments = parse_arguments(argv)
    observation_given = arguments.observation is not None
    observation = arguments.observation if observation_given else dict(DEFAULT_OBSERVATION)
    return run(normalize_url(arguments.url), observation, observation_given, arguments.timeout, out)


if __name__ == "__main__":
    sys.exit(main())
