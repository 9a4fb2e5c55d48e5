"""Check a deployed prediction service before anyone else calls it.

    python clients/smoke_check.py https://my-app.up.railway.app
    make smoke URL=https://my-app.up.railway.app

It sends a handful of requests, the way real clients will, and prints a checklist: one
PASS or FAIL line per check, and under each FAIL what to fix. The exit code is 0 only when
every check passed, so a script (or CI) can rely on it.

It speaks the contract that GET /health reports (a service from before contracts speaks
the tutorial's: POST /predict {"id": <integer>, "observation": {...}}): the routes, the id
fields and their types, a nested or a flat body, the field(s) of the true outcome. It checks
each key of an answer as its source says: a probability is a number from 0 to 1, a decision
a JSON boolean, a label one of the classes, probabilities one per class adding up to 1, a
number finite, and a key quoting the request holds what was sent.

What it does to your database: it stores ONE prediction, under a random id (an integer
between 10**12 and 2**62, far above the ids clients normally use, or a string
"smoke-<random>"), and sends its true outcome to the update route: the positive class of a
binary classifier, or the prediction itself for the other tasks.

A service with API keys (API_KEYS) needs one on the routes that score or label: pass it with
--api-key, or better in the environment variable API_KEY (a command line can be read by the
other users of the machine). It is sent as X-API-Key on those requests only, never on
/health, and never printed.

Only the standard library is used, so any Python 3.11+ runs it, without the project's
requirements.
"""

import argparse
import json
import math
import os
import random
import re
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
# What an HTTP header can carry of a key: printable ASCII without spaces (api_keys.py's keys).
API_KEY_CHARACTERS = re.compile(r"[!-~]+")

# The checklist, in the order it runs; {predict} and {update} are the contract's routes.
HEALTH = "GET /health answers 200 with status ok"
FITS = "the observation has every column the model expects"
PREDICT = "POST {predict} answers the model's prediction"
RETRY = "the same request again gets the same answer"
CONFLICT = "the same id with another observation answers 409"
UPDATE = "POST {update} stores the true outcome"
UNKNOWN = "POST {update} of an unknown id answers 404"
NOT_JSON = "a body that is not JSON answers 400"
INVALID = "an observation with a wrongly typed value answers 422"
# INVALID's check under api.toml [predict] invalid = "as_missing": the value is scored missing.
TREATED = "an observation with a wrongly typed value answers 200, the value treated as missing"
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


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it is: followed, it would carry the key to another URL."""

    def redirect_request(self, *_args):
        return None


class Client:
    def __init__(self, base_url, timeout, api_key=None):
        self.base_url, self.timeout, self.api_key = base_url, timeout, api_key
        self.keyed_opener = urllib.request.build_opener(NoRedirect)

    def post(self, path, body):
        """A request to a route that scores or labels: the one that carries the API key."""
        return self.request("POST", path, body, api_key=self.api_key)

    def request(self, method, path, body=None, api_key=None):
        data = None
        headers = {"Accept": "application/json", "User-Agent": "smoke_check.py"}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if api_key is not None:
            headers["X-API-Key"] = api_key
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers
        )
        urlopen = self.keyed_opener.open if api_key is not None else urllib.request.urlopen
        try:
            with urlopen(request, timeout=self.timeout) as answer:
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
    """PASS, FAIL, WARN and SKIP lines; check names are written with the contract's routes."""

    def __init__(self, out):
        self.out, self.passed, self.failed = out, 0, 0
        self.routes = {"predict": "/predict", "update": "/update"}  # until /health says

    def passes(self, name, detail=""):
        self.passed += 1
        print(f"PASS  {self.named(name)}" + (f" ({detail})" if detail else ""), file=self.out)

    def fails(self, name, problem, fix):
        self.failed += 1
        print(f"FAIL  {self.named(name)}\n      got: {problem}\n      fix: {fix}", file=self.out)

    def warns(self, name, advice):
        print(f"WARN  {name}\n      {advice}", file=self.out)

    def skips(self, name, reason):
        self.failed += 1  # a check that could not run is not a pass
        print(f"SKIP  {self.named(name)} ({reason})", file=self.out)

    def named(self, name):
        return name.format(**self.routes)


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


def refused_for_key(check, name, answer, api_key):
    """A 401: FAIL `name` with what to do about the API key, and SKIP the checks after it,
    which the service would refuse alike. False for any other answer."""
    if answer.status != 401:
        return False
    if api_key is None:
        fix = (
            "the service needs an API key: pass --api-key or set the environment variable "
            "API_KEY to a key of its API_KEYS"
        )
    else:
        fix = (
            "the service refused the API key given (--api-key or API_KEY): use a key of its "
            "API_KEYS"
        )
    check.fails(name, answer.describe(), fix)
    if name in CHECKS:  # TREATED, the last check, stands for INVALID
        skip_the_rest(check, None, "needs an API key the service accepts", after=name)
    return True


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
# The model's task and the service's contract, as /health reports them
# ---------------------------------------------------------------------------------------

TRUTH_FIELDS = {"binary": "true_class", "multiclass": "true_class", "regression": "true_value"}


def task_of(model):
    """The task /health names; a service from before any task answered a binary proba."""
    return model.get("task") or "binary"


def targets_of(model):
    return model.get("targets") or []


def tutorial_contract(model):
    """The contract of a service whose /health describes none: the tutorial's."""
    task = task_of(model)
    answers = {
        "binary": {"proba": "prediction.probability"},
        "multiclass": {"label": "prediction.label", "probabilities": "prediction.probabilities"},
        "regression": {
            "prediction": "prediction" if len(targets_of(model)) > 1 else "prediction.value"
        },
    }
    return {
        "predict": {
            "path": "/predict",
            "id": ["id"],
            "id_types": {"id": "integer"},
            "observation": "observation",
            "answer": answers.get(task, {}),
        },
        "update": {"path": "/update", "true": TRUTH_FIELDS.get(task), "answer": "the stored row"},
        "batch": {"path": "/predict-batch"},
    }


class Brief:
    """The contract a service speaks, as this script writes its requests and reads its answers.

    `described` is /health's "contract" block (contract.describe in the service).
    """

    def __init__(self, described, model):
        predict, update = described["predict"], described["update"]
        self.predict_path, self.update_path = str(predict["path"]), str(update["path"])
        self.id_fields = [str(name) for name in predict["id"]]
        self.id_types = {name: predict["id_types"][name] for name in self.id_fields}
        self.observation_field = str(predict["observation"])
        self.invalid = predict.get("invalid", "reject")  # absent before the key existed
        self.answer = dict(predict["answer"])
        self.true = update["true"]  # a field, or {target: field}
        self.update_answer = update["answer"]  # {key: source}, or "the stored row"
        self.model = model

    @property
    def stored_row(self):
        return not isinstance(self.update_answer, dict)

    def describe(self):
        ids = ", ".join(f"{name} ({self.id_types[name]})" for name in self.id_fields)
        body = (
            f"the features in {self.observation_field}"
            if self.observation_field
            else "the features at the top level"
        )
        true = self.true if isinstance(self.true, str) else ", ".join(self.true.values())
        return (
            f"POST {self.predict_path}: id {ids}, {body}, answers "
            f"{', '.join(self.answer) or 'nothing'}; POST {self.update_path} takes {true}"
        )

    def id_columns(self):
        """The id fields that are also model columns: their values come from the observation."""
        return [name for name in self.id_fields if name in (self.model.get("columns") or [])]

    def fresh_ids(self, observation=None):
        """A new id: random fields, and the observation's values for the id's columns."""
        observation = observation or {}
        return {
            name: observation[name]
            if name in self.id_columns() and name in observation
            else random_id(self.id_types[name])
            for name in self.id_fields
        }

    def predict_body(self, ids, observation):
        if self.observation_field:
            return {**ids, self.observation_field: observation}
        return {**observation, **ids}

    def update_body(self, ids, truth):
        """The id and the true outcome: in one field, or one field per target."""
        if isinstance(self.true, dict):
            return {**ids, **{name: truth.get(target) for target, name in self.true.items()}}
        return {**ids, self.true: truth}

    def fields_sent(self, sent):
        """What request.<field> reads of a body: its own fields, else its observation's."""
        sent = sent or {}
        nested = sent.get(self.observation_field) if self.observation_field else None
        return {**(nested if isinstance(nested, dict) else {}), **sent}

    def client_id(self, ids):
        """The id as a stored row shows it: the value of a one-field id, else all of them."""
        return ids[self.id_fields[0]] if len(self.id_fields) == 1 else ids

    def parts(self, answer):
        """{output: value}: what the answer's keys hold of the prediction (by their sources)."""
        found = {}
        for key, source in self.answer.items():
            where, _, name = source.partition(".")
            if where == "prediction" and key in answer:
                if name:
                    found[name] = answer[key]
                elif isinstance(answer[key], dict):
                    found.update(answer[key])  # the whole prediction
        return found


def random_id(kind):
    if kind == "string":
        return f"smoke-{random.getrandbits(64):016x}"
    return random.randrange(10**12, 2**62)


# ---------------------------------------------------------------------------------------
# The answers: each key checked as its source says
# ---------------------------------------------------------------------------------------


def json_key(label):
    """A class as the service names it in `probabilities` (tasks.json_key): 1 -> "1"."""
    return label if isinstance(label, str) else json.dumps(label)


def json_kind(value):
    return bool if isinstance(value, bool) else str if isinstance(value, str) else float


def same_class(value, label):
    """Equal and of the same JSON kind: neither true nor "1" is the class 1."""
    return json_kind(value) is json_kind(label) and value == label


def outputs_of(model):
    """The names of what the model's prediction holds (model_service/tasks.py: outputs)."""
    task, targets = task_of(model), targets_of(model)
    if task == "binary":
        return ["probability", "decision", "label"]
    if task == "multiclass":
        return ["label", "probabilities"]
    return ["value", *targets] if len(targets) <= 1 else targets


def output_problem(name, value, model):
    """What is wrong with one output of the prediction, or None."""
    classes = model.get("classes") or [0, 1]
    if not name:
        return whole_problem(value, model)
    if name == "probability":
        return None if is_probability(value) else f"{json.dumps(value)} is no probability (0 to 1)"
    if name == "decision":
        return (
            None if isinstance(value, bool) else f"{json.dumps(value)} is no decision (a boolean)"
        )
    if name == "label":
        if any(same_class(value, label) for label in classes):
            return None
        return f"the label {json.dumps(value)} is not one of {json.dumps(classes)}"
    if name == "probabilities":
        return probabilities_problem(value, classes)
    if name not in outputs_of(model):
        return None  # an output this script does not know: a newer service
    return None if is_number(value) else f"{json.dumps(value)} is not a finite number"


def probabilities_problem(probabilities, classes):
    keys = sorted(json_key(label) for label in classes)
    if not isinstance(probabilities, dict) or sorted(probabilities) != keys:
        return f"the probabilities must have one entry per class: {', '.join(keys)}"
    values = list(probabilities.values())
    if not all(is_probability(value) for value in values) or abs(sum(values) - 1) > 1e-6:
        return "the probabilities must be from 0 to 1 and add up to 1"
    return None


def whole_problem(value, model):
    """The whole prediction: an object of every output."""
    names = outputs_of(model)
    if not isinstance(value, dict) or sorted(value) != sorted(names):
        if task_of(model) == "regression" and len(names) > 1:
            return f"the prediction must hold a finite number for each target: {', '.join(names)}"
        return f"the prediction must be an object of {', '.join(names)}"
    problems = (output_problem(name, value[name], model) for name in names)
    return next((problem for problem in problems if problem), None)


def source_problem(source, value, model, sent, conflict=False):
    """What is wrong with an answer's value for its source, or None.

    request.<field> quotes what was sent (`sent`, Brief.fields_sent); a 409's answer may
    quote null instead (a service of an earlier release quoted the model only).
    """
    where, _, name = source.partition(".")
    if where == "request":
        expected = (sent or {}).get(name)
        if value == expected and json_kind(value) is json_kind(expected):
            return None
        if conflict and value is None:
            return None
        return f"{json.dumps(value)} is not the {name} sent ({json.dumps(expected)})"
    if where != "prediction":
        return None  # a source this script does not know: a newer service
    return output_problem(name, value, model)


def answer_problem(response, model, brief=None, sent=None, conflict=False):
    """What is wrong with an answer, key by key as the contract's sources say, or None."""
    body = response.json()
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    brief = brief or Brief(tutorial_contract(model), model)
    missing = [key for key in brief.answer if key not in body]
    if missing:
        return f"the answer has no {', '.join(missing)}"
    extra = sorted(set(body) - set(brief.answer) - ({"error"} if conflict else set()))
    if extra:
        return f"the answer has keys the contract does not name: {', '.join(extra)}"
    for key, source in brief.answer.items():
        problem = source_problem(source, body[key], model, brief.fields_sent(sent), conflict)
        if problem:
            return f"{key}: {problem}"
    return decision_problem(brief.parts(body), model)


def decision_problem(parts, model):
    """A binary classifier's decision and label must follow from its probability."""
    if task_of(model) != "binary" or not is_probability(parts.get("probability")):
        return None
    decided = parts["probability"] >= model.get("threshold", 0.5)
    if "decision" in parts and parts["decision"] != decided:
        return (
            f"the decision {json.dumps(parts['decision'])} does not follow from the probability "
            f"{parts['probability']} at the threshold {model.get('threshold', 0.5)}"
        )
    return None


def in_short(answer, model):
    """The answer on one line: without the probabilities of every class."""
    return ", ".join(
        f"{key} {'{...}' if is_probabilities(value, model) else json.dumps(value)}"
        for key, value in answer.items()
    )


def is_probabilities(value, model):
    return isinstance(value, dict) and task_of(model) == "multiclass" and len(value) > 2


def some_truth(model):
    """A valid true outcome, for the update of an id that does not exist."""
    task = task_of(model)
    if task == "regression":
        targets = targets_of(model)
        return dict.fromkeys(targets, 0.0) if len(targets) > 1 else 0.0
    classes = model.get("classes") or [0, 1]
    return model.get("positive_class", classes[-1]) if task == "binary" else classes[0]


def truth_for(parts, model):
    """What the update sends: the positive class, or the prediction itself (a valid value)."""
    task, targets = task_of(model), targets_of(model)
    if task == "binary" or (task == "multiclass" and "label" not in parts):
        return some_truth(model)
    if task == "multiclass":
        return parts["label"]
    if len(targets) > 1:
        return {target: parts.get(target, 0.0) for target in targets}
    return parts.get("value", parts.get(targets[0], 0.0) if targets else 0.0)


def changed_copy(observation, keep=()):
    """The same observation with one value changed, still valid: for the conflict check.
    `keep` are the id's columns: changed, they would make another id, not a conflict."""
    changed = dict(observation)
    for kind in (float, int):
        for key, value in observation.items():
            if type(value) is kind and key not in keep:
                changed[key] = value + 1
                return changed
    for key, value in observation.items():
        if isinstance(value, str) and key not in keep:
            changed[key] = None  # a missing value: the pipeline's imputer handles it
            return changed
    return None


def wrongly_typed_copy(observation, keep=()):
    """The observation with one value of the wrong JSON type: the service must refuse it."""
    wrong = {float: "not a number", int: "not a number", str: 0, bool: "not a boolean"}
    for key, value in observation.items():
        if type(value) in wrong and key not in keep:
            return {**observation, key: wrong[type(value)]}
    return None


# ---------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------


def run(base_url, observation, observation_given, timeout, out, api_key=None):
    client = Client(base_url, timeout, api_key)
    check = Checklist(out)
    print(f"Smoke check of {base_url}\n", file=out)
    brief = check_health(client, check, base_url, out)
    if brief is None:
        return finish(check, out)
    if task_of(brief.model) not in TRUTH_FIELDS:
        check.fails(
            FITS,
            f"the model's task is {task_of(brief.model)!r}",
            "this smoke_check.py knows binary, multiclass and regression models: use the "
            "smoke_check.py of the service's own release",
        )
        return skip_the_rest(check, out, "needs a task this script knows", after=FITS)
    if observation_fits(check, observation, observation_given, brief.model):
        first = check_predictions(client, check, observation, brief)
        if first.status == 401:  # the checks after it are skipped already
            return finish(check, out)
    check_refusals(client, check, observation, brief)
    return finish(check, out)


def check_health(client, check, base_url, out):
    """/health: the app runs, loaded its model, reaches its database, speaks a contract.
    Returns that contract (a Brief), or None when the other checks cannot run."""
    health = client.request("GET", "/health")
    body = health.json() if health.status == 200 else None
    if not (isinstance(body, dict) and body.get("status") == "ok"):
        check.fails(HEALTH, health.describe(), fix_for_unreachable(health))
        skip_the_rest(check, None, "needs a healthy /health")
        return None
    model = body.get("model") if isinstance(body.get("model"), dict) else {}
    brief = read_brief(body, model)
    if brief is None:
        check.fails(
            HEALTH,
            f"a contract this script cannot read: {json.dumps(body.get('contract'))[:200]}",
            "use the smoke_check.py of the service's own release",
        )
        skip_the_rest(check, None, "needs a contract this script can read")
        return None
    check.routes = {"predict": brief.predict_path, "update": brief.update_path}
    engine = body.get("database", {}).get("engine", "?")
    check.passes(HEALTH, f"database: {engine}")
    print(f"      contract: {brief.describe()}", file=out)
    warn_of_sqlite(check, base_url, engine)
    return brief


def observation_fits(check, observation, observation_given, model):
    """Whether the observation has every column of the deployed model (else: what to send)."""
    columns = model.get("columns") or []
    missing = [column for column in columns if column not in observation]
    if not missing:
        check.passes(FITS, f"{len(columns)} columns, a {task_of(model)} model")
        return True
    fix = (
        "pass an observation for your model: --observation '{\"column\": value, ...}' "
        f"with the columns {columns}"
    )
    if not observation_given:
        fix = "the default observation is the Titanic example; " + fix
    check.fails(FITS, f"it lacks {missing}", fix)
    for name in [PREDICT, RETRY, CONFLICT, UPDATE]:
        check.skips(name, "needs an observation for this model")
    return False


def skip_the_rest(check, out, reason, after=HEALTH):
    """SKIP every check after `after`; with `out`, the summary too (the exit code)."""
    for name in CHECKS[CHECKS.index(after) + 1 :]:
        check.skips(name, reason)
    return finish(check, out) if out is not None else None


def read_brief(body, model):
    """The contract /health describes (none: the tutorial's), or None if it cannot be read."""
    described = body.get("contract")
    try:
        return Brief(described if described is not None else tutorial_contract(model), model)
    except (KeyError, TypeError, AttributeError):
        return None


def warn_of_sqlite(check, base_url, engine):
    host = urllib.parse.urlsplit(base_url).hostname or ""
    if "Sqlite" in engine and host not in LOCAL_HOSTS:
        check.warns(
            "the deployed app stores predictions in SQLite",
            "the file lives in the container and is lost on every redeploy: add "
            "PostgreSQL and set DATABASE_URL (README: Deploying to Railway).",
        )


def check_refusals(client, check, observation, brief):
    """Requests the service must refuse, and say why, without storing anything."""
    unknown = brief.update_body(brief.fresh_ids(), some_truth(brief.model))
    answer = client.post(brief.update_path, unknown)
    if refused_for_key(check, UNKNOWN, answer, client.api_key):
        return
    if answer.status == 404 and is_error_body(answer):
        check.passes(UNKNOWN, answer.json()["error"])
    else:
        check.fails(
            UNKNOWN,
            answer.describe(),
            f'{brief.update_path} must answer 404 {{"error": ...}} for an id it never predicted',
        )

    answer = client.post(brief.predict_path, b'{"id": ')
    if refused_for_key(check, NOT_JSON, answer, client.api_key):
        return
    if answer.status == 400 and is_error_body(answer):
        check.passes(NOT_JSON, answer.json()["error"])
    else:
        check.fails(
            NOT_JSON,
            answer.describe(),
            "read_json_body() in model_service/parsing.py must turn invalid JSON into 400 "
            '{"error": ...}',
        )

    bad = wrongly_typed_copy(observation, keep=brief.id_columns())
    if bad is None and not brief.observation_field:
        check.skips(INVALID, "no value in the observation to send with the wrong type")
        return
    ids = brief.fresh_ids(observation)
    bad_body = brief.predict_body(ids, bad if bad is not None else ["not", "an object"])
    answer = client.post(brief.predict_path, bad_body)
    treated = brief.invalid == "as_missing" and bad is not None
    if refused_for_key(check, TREATED if treated else INVALID, answer, client.api_key):
        return
    if treated:
        check_treated_as_missing(check, answer)
    elif answer.status == 422 and is_error_body(answer):
        check.passes(INVALID, answer.json()["error"])
    else:
        check.fails(
            INVALID,
            answer.describe(),
            "validate_observation() in model_service/parsing.py must refuse a value of the "
            "wrong type with 422",
        )


def check_treated_as_missing(check, answer):
    treated = {k.lower(): v for k, v in answer.headers.items()}.get("x-treated-as-missing")
    if answer.status == 200 and treated:
        check.passes(TREATED, f"X-Treated-As-Missing: {treated}")
    else:
        check.fails(
            TREATED,
            answer.describe(),
            'api.toml [predict] invalid = "as_missing": read_observation in '
            "model_service/parsing.py must score a "
            "wrongly typed value as missing and the answer name it in X-Treated-As-Missing",
        )


def check_predictions(client, check, observation, brief):
    """A prediction, its retry, a conflicting repeat and an update, all on a fresh id.
    Returns the first answer (a 401: the checks after it are skipped)."""
    ids = brief.fresh_ids(observation)
    request_body = brief.predict_body(ids, observation)
    first = client.post(brief.predict_path, request_body)
    if refused_for_key(check, PREDICT, first, client.api_key):
        return first
    model = brief.model
    problem = answer_problem(first, model, brief, request_body) if first.status == 200 else None
    if first.status == 200 and problem is None:
        answered = in_short(first.json(), model)
        check.passes(PREDICT, f"id {json.dumps(brief.client_id(ids))}: {answered}")
    else:
        fix = "read the deploy logs (railway logs): the error is logged with its request id"
        if first.status == 422:
            fix = "the observation does not suit the model: fix --observation"
        elif first.status == 200:
            fix = f"the contract's answer is {json.dumps(brief.answer)} (GET /openapi.yaml)"
        check.fails(PREDICT, problem or first.describe(), fix)
        for name in [RETRY, CONFLICT, UPDATE]:
            check.skips(name, "needs a stored prediction")
        return first

    retry = client.post(brief.predict_path, request_body)
    if retry.status == 200 and retry.json() == first.json():
        check.passes(RETRY)
    else:
        check.fails(
            RETRY,
            retry.describe(),
            "a retry (same id, same observation) must answer 200 with the stored answer: "
            "clients resend after a timeout",
        )

    check_conflict(client, check, ids, observation, brief)
    check_update(client, check, ids, brief.parts(first.json()), brief)
    return first


def check_conflict(client, check, ids, observation, brief):
    changed = changed_copy(observation, keep=brief.id_columns())
    if changed is None:
        check.skips(CONFLICT, "no value to change")
        return
    conflict = client.post(brief.predict_path, brief.predict_body(ids, changed))
    refused = conflict.status == 409 and is_error_body(conflict)
    sent = brief.predict_body(ids, changed)
    if refused and answer_problem(conflict, brief.model, brief, sent, conflict=True) is None:
        check.passes(CONFLICT, conflict.json()["error"])
    else:
        keys = ", ".join(f'"{key}": ...' for key in brief.answer)
        check.fails(
            CONFLICT,
            conflict.describe(),
            "a reused id with a different observation must answer 409 "
            f'{{"error": ..., {keys}}} and leave the stored row alone',
        )


def check_update(client, check, ids, parts, brief):
    truth = truth_for(parts, brief.model)
    sent = brief.update_body(ids, truth)
    update = client.post(brief.update_path, sent)
    body = update.json() if update.status == 200 else None
    problem = update_problem(body, ids, truth, sent, parts, brief) if body is not None else None
    if body is not None and problem is None:
        said = ", ".join(f"{k} {json.dumps(v)}" for k, v in sent.items() if k not in ids)
        check.passes(UPDATE, said)
        return
    if brief.stored_row:
        field_name = TRUTH_FIELDS[task_of(brief.model)]
        binary = task_of(brief.model) == "binary"
        fix = f"{brief.update_path} must answer 200 with the stored row: observation_id, " + (
            f"{field_name}" + (", proba" if binary else "")
        )
    else:
        fix = f"{brief.update_path} must answer the contract's {json.dumps(brief.update_answer)}"
    check.fails(UPDATE, problem or update.describe(), fix)


def update_problem(body, ids, truth, sent, parts, brief):
    """What is wrong with the update's answer: the stored row, or the contract's keys."""
    model = brief.model
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if brief.stored_row:
        field_name = TRUTH_FIELDS[task_of(model)]
        if body.get("observation_id") != brief.client_id(ids):
            return f"observation_id is {json.dumps(body.get('observation_id'))}, not the id sent"
        if body.get(field_name) != truth:
            return f"{field_name} is {json.dumps(body.get(field_name))}, not {json.dumps(truth)}"
        if "probability" in parts and body.get("proba") != parts["probability"]:
            return f"proba is {body.get('proba')}, not the {parts['probability']} answered"
        return None
    missing = [key for key in brief.update_answer if key not in body]
    if missing:
        return f"the answer has no {', '.join(missing)}"
    for key, source in brief.update_answer.items():
        where, _, name = source.partition(".")
        if where == "prediction" and name in parts and body[key] != parts[name]:
            return f"{key} is {json.dumps(body[key])}, not the {json.dumps(parts[name])} answered"
        problem = source_problem(source, body[key], model, sent)
        if problem:
            return f"{key}: {problem}"
    return None


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
        epilog="Example: python clients/smoke_check.py https://my-app.up.railway.app",
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
    parser.add_argument(
        "--api-key",
        default=os.environ.get("API_KEY"),
        help="the key for a service with API_KEYS, sent as X-API-Key to the routes that score "
        "or label (default: the environment variable API_KEY, which other users of the "
        "machine cannot read as they can a command line)",
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
    arguments.api_key = api_key_of(parser, arguments.api_key)
    return arguments


def api_key_of(parser, given):
    """The key to send, stripped (a key file's newline), or None; never shown in an error."""
    key = (given or "").strip()
    if key and not API_KEY_CHARACTERS.fullmatch(key):
        parser.error(
            "the API key (--api-key or API_KEY) holds a space or a character that is not "
            "printable ASCII, which no key has"
        )
    return key or None


def main(argv=None, out=sys.stdout):
    arguments = parse_arguments(argv)
    observation_given = arguments.observation is not None
    observation = arguments.observation if observation_given else dict(DEFAULT_OBSERVATION)
    return run(
        normalize_url(arguments.url),
        observation,
        observation_given,
        arguments.timeout,
        out,
        arguments.api_key,
    )


if __name__ == "__main__":
    sys.exit(main())
