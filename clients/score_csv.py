"""Score every row of a CSV file with the service: its answer, or why it has none.

    python clients/score_csv.py URL INPUT.csv OUTPUT.csv [--id-column id] [--batch-size 500]
    make score URL=http://localhost:5000 IN=examples/passengers.csv OUT=scored.csv

It speaks the contract that GET /health reports (a service from before contracts: the
tutorial's), through its batch route (POST /predict-batch unless the brief names another).

INPUT.csv holds one observation per row: the id column(s) and the model's columns, which
GET /health lists. The id columns are named like the contract's id fields (`id` for the
tutorial, `observation_id` for the stop-and-search brief, every field of a composite key);
--id-column names another column for a one-field id. An id is read as the contract types
it: an integer, a string, or, for an id that takes either (the tutorial's), an integer when
the text is one written plainly ("42": the service holds 42 and "42" as one id) and a string
otherwise ("042", "E12"). Other columns are ignored. A value is parsed by the dtype
/health reports for its column, so that "3" in an integer column is sent as 3 and "C85"
stays a string; an empty cell is a missing value. A value that does not parse is sent as it
is, and the service says what is wrong with it in that row's error. Each row is sent in the
contract's shape: the features nested in the observation field, or next to the id.

OUTPUT.csv holds the input columns, unchanged, plus one column per key of the contract's
answer, `status` and `error` (the result of the batch route for that row: 200 with the
answer, 409 with the answer and an error, 422 with an error), one line per input row, in
order. A key whose value is an object gets a column per entry, named <key>_<entry>; a
column whose name OUTPUT.csv already has (an input column, such as the id an answer
echoes, or status, or error) is named answer_<key>:

    tutorial binary classifier    proba (the probability of the positive class)
    tutorial multiclass           label, then probabilities_<class> for each class
    tutorial regressor            prediction, or prediction_<target> for each target
    stop-and-search brief         outcome (the decision: true or false)

They hold what the service answers, nothing computed here (booleans, and labels that are
not strings, written as JSON writes them: true, 1). OUTPUT.csv is written to a temporary
file renamed at the end: an interrupted run leaves no half-written output.

A service with API keys (API_KEYS) needs one on its batch route: pass it with --api-key,
or better in the environment variable API_KEY (a command line can be read by the other
users of the machine). It is sent as X-API-Key on the batch requests only, never on
/health, and never printed.

A progress bar shows rows/s. Answers 502, 503 and 504, timeouts and dropped connections
are retried with backoff for up to --retry-for seconds: the ids make every request
idempotent, so a service that restarts or loses its database for a while costs time,
not rows. Running the same command again after an interruption resumes the work: rows
already scored are sent again and get their stored answers; nothing is stored twice.

Exit status: 0 when every row has an answer; 1 when some rows have an error (the
whole file is written, and a summary line says how many); 2 when the run cannot be done
(no id column, a file that cannot be read or written, a service that cannot be reached
or refuses the requests, an API key missing or refused), with one sentence that says why.

Needs pandas, requests and tqdm (requirements_dev.txt has them), and of the rest of the
project only model_service/answer_columns.py (standard library only): on another machine,
copy the two files (keeping their folders) and `pip install pandas requests tqdm`.
"""

import argparse
import json
import os
import random
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import requests
from tqdm import tqdm

# The answer's columns are named as GET /export names them: by the service's own module
# (standard library only). Run as a script, the repository root is not on the path.
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from model_service.answer_columns import AnswerColumns, answer_columns  # noqa: E402

# What an HTTP header can carry of a key: printable ASCII without spaces (the service's keys).
API_KEY_CHARACTERS = re.compile(r"[!-~]+")
RETRY_STATUSES = {502, 503, 504}  # a restarting service, or its database down for a while
CONNECT_TIMEOUT = 10  # seconds; the read timeout is --timeout


class UsageError(Exception):
    """The run cannot be done: one sentence that says why (exit status 2)."""


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        description="Score every row of a CSV file with the service's batch route.",
        epilog="Exit status: 0 every row scored, 1 some rows have an error, 2 usage error.",
    )
    parser.add_argument("url", help="the service, e.g. https://my-app.up.railway.app")
    parser.add_argument("input", type=Path, help="the CSV file to score")
    parser.add_argument("output", type=Path, help="the CSV file to write (replaced)")
    parser.add_argument(
        "--id-column",
        help="the CSV column of a one-field id (default: the contract's id field, e.g. id)",
    )
    parser.add_argument(
        "--batch-size", type=positive, default=500, help="rows per request (default: 500)"
    )
    parser.add_argument(
        "--connections", type=positive, default=2, help="requests in flight (default: 2)"
    )
    parser.add_argument(
        "--retry-for",
        type=float,
        default=600,
        help="seconds to keep retrying a request the service does not answer (default: 600)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120, help="seconds to wait for an answer (default: 120)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("API_KEY"),
        help="the key for a service with API_KEYS, sent as X-API-Key to the batch route "
        "(default: the environment variable API_KEY, which other users of the machine "
        "cannot read as they can a command line)",
    )
    options = parser.parse_args(argv)
    options.api_key = api_key_of(parser, options.api_key)
    return options


def api_key_of(parser, given):
    """The key to send, stripped (a key file's newline), or None; never shown in an error."""
    key = (given or "").strip()
    if key and not API_KEY_CHARACTERS.fullmatch(key):
        parser.error(
            "the API key (--api-key or API_KEY) holds a space or a character that is not "
            "printable ASCII, which no key has"
        )
    return key or None


def positive(text):
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


# ---------------------------------------------------------------------------------------
# From CSV text to JSON values, by the dtype of each column
# ---------------------------------------------------------------------------------------


def to_integer(text):
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)  # "3.0" is accepted as 3; "3.5" or "nan" gets the service's 422
    except ValueError:
        return text


def to_float(text):
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def to_boolean(text):
    words = {"true": True, "1": True, "false": False, "0": False}
    return None if text == "" else words.get(text.strip().lower(), text)


def to_string(text):
    return None if text == "" else text


def to_number_or_string(text):
    """For a service that reports no dtypes: "3" -> 3, "2.5" -> 2.5, "C85" stays text."""
    return to_integer(text)


def converter(dtype_name):
    """How the text of a cell becomes the JSON value the service expects for this dtype."""
    try:
        dtype = pd.api.types.pandas_dtype(dtype_name)
    except TypeError:
        return to_string
    if pd.api.types.is_bool_dtype(dtype):
        return to_boolean
    if pd.api.types.is_integer_dtype(dtype):
        return to_integer
    if pd.api.types.is_float_dtype(dtype):
        return to_float
    return to_string


# ---------------------------------------------------------------------------------------
# The contract, as /health reports it: the id, the body, the answer's columns
# ---------------------------------------------------------------------------------------


def tutorial_contract(model):
    """The contract of a service whose /health describes none: the tutorial's."""
    targets = model.get("targets") or []
    answers = {
        "binary": {"proba": "prediction.probability"},
        "multiclass": {"label": "prediction.label", "probabilities": "prediction.probabilities"},
        "regression": {"prediction": "prediction" if len(targets) > 1 else "prediction.value"},
    }
    task = model.get("task") or "binary"
    if task not in answers:
        raise UsageError(
            f"The service's model is a {task!r} model, which this score_csv.py cannot write: "
            "use the score_csv.py of the service's own release."
        )
    return {
        "predict": {
            "id": ["id"],
            "id_types": {"id": "integer"},
            "observation": "observation",
            "answer": answers[task],
        },
        "batch": {"path": "/predict-batch"},
    }


@dataclass
class Brief:
    """What the rows become, and what the answers fill: read from GET /health."""

    converters: dict  # model column -> how its cells become JSON values
    id_columns: dict  # id field -> the CSV column that holds it
    id_kinds: dict  # id field -> "integer", "string" or "integer or string"
    observation_field: str  # "" = the features next to the id
    batch_path: str
    answers: "AnswerColumns"

    def items(self, frame, present):
        """The batch items of a chunk of the CSV, in the contract's shape."""
        ids = {
            name: [ID_CONVERTERS[self.id_kinds[name]](text) for text in frame[column]]
            for name, column in self.id_columns.items()
        }
        values = {
            column: [self.converters[column](text) for text in frame[column]] for column in present
        }
        return [
            self.body(
                {name: ids[name][row] for name in ids},
                {column: values[column][row] for column in values},
            )
            for row in range(len(frame))
        ]

    def body(self, ids, features):
        """One predict body: the features nested in the observation field, or next to the id."""
        if self.observation_field:
            return {**ids, self.observation_field: features}
        return {**features, **ids}


def to_id(text):
    """An id that may be an integer or a string: "42" -> 42, which the service holds as the
    same id as "42"; any other text as it is ("042", "E12", "4.0": ids of their own)."""
    if text == "":
        return None
    try:
        number = int(text)
    except ValueError:
        return text
    return number if str(number) == text and -(2**63) <= number < 2**63 else text


ID_CONVERTERS = {"integer": to_integer, "string": to_string, "integer or string": to_id}


# ---------------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------------


class Service:
    """The batch route (POST /predict-batch) with retries, one HTTP session per thread."""

    def __init__(self, url, options):
        self.url = url
        self.options = options
        self.batch_size = options.batch_size  # lowered if the service refuses big batches
        self.local = threading.local()
        self.sessions = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.batch_path = "/predict-batch"  # until /health names the contract's

    def session(self):
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
            self.local.session.headers["User-Agent"] = "score_csv.py"
            with self.lock:
                self.sessions.append(self.local.session)
        return self.local.session

    def stop(self):
        self.stopping.set()

    def close(self):
        for session in self.sessions:
            session.close()

    def brief(self):
        """From GET /health: the model's columns and the contract (Brief)."""
        try:
            response = self.session().get(f"{self.url}/health", timeout=(CONNECT_TIMEOUT, 30))
        except requests.RequestException as error:
            raise UsageError(
                f"Cannot reach the service at {self.url} ({describe(error)})."
            ) from None
        try:  # a 503 (database down) still names the model: the requests will be retried
            health = response.json()
            model = health["model"]
            columns = list(model["columns"])
        except (ValueError, KeyError, TypeError):
            raise UsageError(
                f"{self.url}/health answered HTTP {response.status_code} without the model's "
                "columns: is this URL the prediction service?"
            ) from None
        contract = health.get("contract") or tutorial_contract(model)
        try:
            brief = read_brief(contract, model, converters(model, columns), self.options)
        except (KeyError, TypeError, AttributeError):
            raise UsageError(
                f"{self.url}/health describes a contract this score_csv.py cannot read: use "
                "the score_csv.py of the service's own release."
            ) from None
        self.batch_path = brief.batch_path
        return brief

    def score(self, items):
        """One result per item, in order; big batches are split if the service refuses them."""
        response = self.post(items)
        if response.status_code in (413, 422) and len(items) > 1:
            half = len(items) // 2
            self.batch_size = min(self.batch_size, half)  # and smaller batches from now on
            return self.score(items[:half]) + self.score(items[half:])
        if response.status_code == 401:
            raise self.key_refused(response)
        if response.status_code == 404:
            raise UsageError(
                f"{self.url} has no POST {self.batch_path}: is it this service, deployed from "
                "a version that has it?"
            )
        try:
            results = response.json()["results"] if response.status_code == 200 else None
        except (ValueError, KeyError, TypeError):
            results = None
        if not isinstance(results, list) or len(results) != len(items):
            raise UsageError(
                f"The service refused a batch of {len(items)} rows: {answer(response)}."
            )
        return results

    def key_refused(self, response):
        """The 401's sentence: a key to give, or the one given is not the service's."""
        if self.options.api_key is None:
            return UsageError(
                f"The service at {self.url} needs an API key: pass --api-key or set the "
                "environment variable API_KEY to a key of its API_KEYS."
            )
        return UsageError(
            f"The service at {self.url} refused the API key given (--api-key or API_KEY): "
            f"{answer(response)}."
        )

    def post(self, items):
        """The service's answer, after retrying what can be retried for up to --retry-for s."""
        body = json.dumps({"observations": items}).encode()  # NaN allowed: the service reads it
        headers = {"Content-Type": "application/json"}
        if self.options.api_key is not None:
            headers["X-API-Key"] = self.options.api_key
        timeout = (CONNECT_TIMEOUT, self.options.timeout)
        delay, started, problem = 0.5, time.monotonic(), None
        while True:
            try:
                # Not redirected: requests would carry the key to wherever the answer points.
                response = self.session().post(
                    f"{self.url}{self.batch_path}",
                    data=body,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
                if response.status_code not in RETRY_STATUSES:
                    if problem is not None:
                        waited = time.monotonic() - started
                        say(f"The service answers again, after {waited:.1f} s.")
                    return response
                now_problem = answer(response)
            except requests.RequestException as error:  # refused, dropped, timed out
                now_problem = describe(error)
            waited = time.monotonic() - started
            if waited >= self.options.retry_for:
                raise UsageError(
                    f"The service at {self.url} has not answered for {waited:.0f} s "
                    f"({now_problem}); run the same command again to resume."
                )
            if problem is None:
                say(f"Retrying for up to {self.options.retry_for:g} s: {now_problem}")
            problem = now_problem
            # Exponential backoff with jitter, so that many clients do not retry in step.
            pause = min(delay * random.uniform(1, 1.5), self.options.retry_for - waited)
            if self.stopping.wait(max(0.0, pause)):
                raise UsageError("Stopped while retrying.")
            delay = min(delay * 2, 10)


def converters(model, columns):
    """How the cells of each model column become JSON values: by the dtypes /health reports."""
    dtypes = model.get("dtypes")
    if not isinstance(dtypes, dict):
        say("The service reports no dtypes: numbers are sent as numbers, text as text.")
        return dict.fromkeys(columns, to_number_or_string)
    return {column: converter(str(dtypes.get(column))) for column in columns}


def read_brief(contract, model, column_converters, options):
    """The Brief of /health's contract block; --id-column renames a one-field id's column."""
    predict = contract["predict"]
    fields = [str(name) for name in predict["id"]]
    if options.id_column is not None and len(fields) > 1:
        raise UsageError(
            f"--id-column names the column of a one-field id, and this service's id has "
            f"{len(fields)} fields ({', '.join(fields)}): name the CSV's columns so."
        )
    columns = [options.id_column] if options.id_column is not None else fields
    return Brief(
        converters=column_converters,
        id_columns=dict(zip(fields, columns, strict=True)),
        id_kinds={name: predict["id_types"][name] for name in fields},
        observation_field=str(predict["observation"]),
        batch_path=str(contract["batch"]["path"]),
        answers=answer_columns(model, dict(predict["answer"])),
    )


def say(message):
    """A line on stderr, above the progress bar (stdout keeps only the summary)."""
    tqdm.write(message, file=sys.stderr)


def describe(error):
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    reason = str(error).split("(Caused by ")[-1].rstrip(")")
    return f"cannot connect: {reason[:160]}"


def answer(response):
    try:
        detail = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        detail = response.text.strip()[:160] or "(empty body)"
    return f"HTTP {response.status_code}: {detail}"


# ---------------------------------------------------------------------------------------
# The file
# ---------------------------------------------------------------------------------------


def read_csv(path, **options):
    """pandas.read_csv, every cell as its text ("" when empty), or a UsageError."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, **options)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise cannot_read(path, error) from None


def csv_chunks(path, rows, **options):
    """The file, `rows` rows at a time; a line that cannot be read is a UsageError too."""
    with read_csv(path, chunksize=rows, **options) as reader:
        try:
            yield from reader
        except (UnicodeDecodeError, pd.errors.ParserError) as error:
            raise cannot_read(path, error) from None


def cannot_read(path, error):
    reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
    return UsageError(f"Cannot read {path} as CSV ({reason}).")


def check_files(options, header, brief):
    """The number of rows, after checking the id column(s) and the output folder."""
    for column in brief.id_columns.values():
        if column not in header:
            fix = (
                "name the id column with --id-column"
                if len(brief.id_columns) == 1
                else f"the id is {', '.join(brief.id_columns)}: a column each"
            )
            raise UsageError(
                f"{options.input} has no column {column!r} (its columns: "
                f"{', '.join(header[:12])}); {fix}."
            )
    folder = options.output.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UsageError(f"Cannot write {options.output}: {folder} is not a writable folder.")
    id_columns = list(dict.fromkeys(brief.id_columns.values()))
    return sum(len(chunk) for chunk in csv_chunks(options.input, 100_000, usecols=id_columns))


def batches(items, size):
    return [items[start : start + size] for start in range(0, len(items), size)]


def score_file(options, service):
    header = read_csv(options.input, nrows=0)  # an unreadable file fails before the service
    brief = service.brief()
    total = check_files(options, list(header.columns), brief)
    taken = [name for name in ("status", "error") if name in header]
    if taken:  # writing over it would lose the input's values
        raise UsageError(
            f"{options.input} has a column {taken[0]!r}, which OUTPUT.csv needs for the "
            "result: rename it."
        )
    # An answer's column never replaces an input column (the id it echoes, a true label).
    answers = brief.answers.clear_of({*header.columns, "status", "error"})
    missing = [column for column in brief.converters if column not in header]
    if missing:
        say(f"{options.input} has no column {', '.join(missing)}: sent as missing values.")
    present = [column for column in brief.converters if column not in missing]
    counts = {}
    # Written next to OUTPUT, then renamed over it: an interrupted run leaves no half file.
    partial = options.output.with_name(options.output.name + ".partial")
    pool = ThreadPoolExecutor(options.connections)
    try:
        with (
            open(partial, "w", newline="") as file,
            tqdm(total=total, unit="row", desc="scoring", smoothing=0.1) as progress,
        ):
            write_chunk(file, header, [], answers, with_header=True)
            rows = options.batch_size * options.connections * 4
            for chunk in csv_chunks(options.input, rows):
                items = brief.items(chunk, present)
                results = []
                for answered in pool.map(service.score, batches(items, service.batch_size)):
                    results += answered
                    progress.update(len(answered))
                for result in results:
                    counts[result.get("status")] = counts.get(result.get("status"), 0) + 1
                write_chunk(file, chunk, results, answers)
        os.replace(partial, options.output)
    except OSError as error:
        where = error.filename or options.output
        raise UsageError(f"Cannot write {where} ({error.strerror or error}).") from None
    finally:
        service.stop()  # requests still retrying give up at once
        pool.shutdown(wait=False, cancel_futures=True)
        partial.unlink(missing_ok=True)
    return counts, answers.noun


def write_chunk(file, chunk, results, answers, with_header=False):
    output = chunk.copy()  # the input's text, unchanged
    cells = [answers.cells(result) for result in results]
    for index, name in enumerate(answers.paths):
        output[name] = [row[index] for row in cells]
    output["status"] = pd.array([result.get("status") for result in results], dtype="Int64")
    output["error"] = [result.get("error", "") for result in results]
    output.to_csv(file, header=with_header, index=False)


def summary(counts, output, seconds, noun="a probability"):
    rows = sum(counts.values())
    scored = counts.get(200, 0)
    speed = f"{rows / seconds:,.0f} rows/s" if seconds > 0 else "-"
    line = f"Scored {rows:,} rows in {seconds:.1f} s ({speed}): {scored:,} with {noun}"
    if scored == rows:
        return line + "."
    errors = ", ".join(
        f"{status}: {count:,}" for status, count in sorted(counts.items()) if status != 200
    )
    return line + f"; {rows - scored:,} with an error ({errors}): see the error column of {output}."


def main(argv=None):
    options = parse_arguments(argv)
    url = options.url.rstrip("/")
    service = Service(url, options)
    started = time.monotonic()
    try:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"The URL must start with http:// or https://, not {options.url!r}.")
        counts, noun = score_file(options, service)
    except UsageError as error:
        print(f"score_csv.py: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"\nInterrupted: {options.output} was not written. Run the same command again to "
            "resume: rows already scored get their stored answers.",
            file=sys.stderr,
        )
        return 130
    finally:
        service.close()
    print(summary(counts, options.output, time.monotonic() - started, noun))
    return 0 if set(counts) <= {200} else 1


if __name__ == "__main__":
    sys.exit(main())
