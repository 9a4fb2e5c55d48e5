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
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playhouse.db_url import connect

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


def request_shape(model):
    """(the body with %ID% where the id goes, the route), as the model's contract says."""
    sys.path.insert(0, str(ROOT))
    from model_service import contract  # noqa: PLC0415 (the benchmark reads the same api.toml as the service)

    tables = contract.read_contract_file(ROOT / model)
    predict = tables.get("predict", {})
    path = predict.get("path", "/predict")
    id_field, flat = predict.get("id", "id"), predict.get("observation", "observation") == ""
    id_value = '"%ID%"' if predict.get("id_type") == "string" else "%ID%"
    features = json.dumps(OBSERVATIONS[model])
    if flat:
        return f'{{"{id_field}": {id_value}, {features[1:]}', path
    return f'{{"{id_field}": {id_value}, "observation": {features}}}', path


class Server:
    """gunicorn with 2 workers in a subprocess: the service, or the one-row app."""

    def __init__(self, name, database_url, one_row, model_dir):
        self.name, self.table = name, "one_row_prediction" if one_row else "prediction"
        self.database_url = database_url
        self.port = free_port()
        if one_row:  # gunicorn's defaults: sync workers, no config file (it runs in HERE)
            command, folder = ["--workers", "2", "one_row_app:app"], HERE
        else:
            command, folder = ["--config", "gunicorn.conf.py", "app:app"], ROOT
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "MODEL_DIR": str(ROOT / model_dir),
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
    """The ids stored by one run (ids from first_id on), and how many transactions.

    The service keys a row by the id's JSON text ('123', or '"123"' for a string id); the
    one-row app stores the id as text.
    """
    key = "observation_id" if server.table == "one_row_prediction" else "observation_key"
    with connect(server.database_url) as database:
        rows = database.execute_sql(f"SELECT {key}, created_at FROM {server.table}").fetchall()
    ids = [(int(json.loads(row[0]) if row[0].startswith('"') else row[0]), row[1]) for row in rows]
    ours = [(number, created) for number, created in ids if number > first_id]
    return {number for number, _ in ours}, len({created for _, created in ours})


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
            with connect(where) as database:
                for table in ("prediction", "one_row_prediction"):
                    database.execute_sql(f"DROP TABLE IF EXISTS {table}")
        table = measure(name, service_url, baseline_url, options, first_id=0)
        problems += sum(
            run["non_2xx"] + run["missing"]
            for _, runs in table
            for server_runs in runs.values()
            for run in server_runs
        )
    print(f"non-2xx answers, socket errors and answered ids without a row: {problems}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
