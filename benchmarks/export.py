"""GET /export of a large table: its speed, a worker's memory, and the predictions meanwhile.

    python benchmarks/export.py [--rows 1000000]
                                [--postgres-url postgresql://postgres@127.0.0.1:5432/mine]

`make bench-export` runs it. The issue's promise: an export of a million rows holds the
server's memory flat, and never holds up a concurrent /predict for more than its usual
p99. For each database (SQLite in a temporary folder, and PostgreSQL when a URL is given:
EVERY table of that database is dropped first, as benchmarks/stats.py does), it stores
`--rows` Titanic predictions with benchmarks/stats.py's fill (imported, as are its memory
readings and its wrk run), starts the service as `make run` does (gunicorn, 2 workers),
and measures:

* the export of the first tenth of the rows (`?until=`: the first 3 of the 30 days), then
  of the whole table, as CSV and as JSON lines: the time, rows/s, megabytes, the rows
  counted, and the workers' peak resident memory during it (the kernel's high-water mark,
  reset before) above what they held before. Flat: the whole table costs what its tenth
  costs. A first export of each format, of 2,000 rows, warms the imports and caches up;
* /predict's p50 and p99 at 16 connections (wrk, as benchmarks/stats.py runs it) for 10 s
  alone, then for 10 s while another client downloads /export again and again, and the
  ratio of the two p99s.

The rows counted are the lines received (the CSV's header aside), against X-Export-Rows
and the rows stored; the first and the last megabyte of each download are read back by
pandas, and their row_ids must run without a gap from the first row to the last. It exits 1
when a count or a row_id is wrong, or when a prediction fails.
"""

import argparse
import io
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd
import requests
import throughput
from stats import (  # benchmarks/stats.py; LiveServer is tests/live_server.py's
    AUTHORIZATION,
    CONNECTIONS,
    FIRST_WRK_ID,
    ROOT,
    TOKEN,
    WRK_SECONDS,
    LiveServer,
    Passengers,
    WrkTarget,
    fill,
    memory_kib,
    reset_peak_memory,
    worker_pids,
)

EDGE_BYTES = 1 << 20  # the first and the last megabyte of a download are read back
WARM_UP_ROWS = 2000
READY_SECONDS = 1800  # the service's start-up may first derive what it needs from the rows


@dataclass
class Download:
    """What a client received of one /export: counted as it came, its two ends kept."""

    seconds: float = 0.0
    size: int = 0
    lines: int = 0
    announced: int = 0  # the header X-Export-Rows
    head: bytearray = field(default_factory=bytearray)
    tail: deque = field(default_factory=deque)
    tail_size: int = 0

    def add(self, chunk):
        self.size += len(chunk)
        self.lines += chunk.count(b"\n")
        if len(self.head) < EDGE_BYTES:
            self.head += chunk
        self.tail.append(chunk)
        self.tail_size += len(chunk)
        while self.tail_size - len(self.tail[0]) >= EDGE_BYTES:
            self.tail_size -= len(self.tail.popleft())


def download(server, query, stop=None):
    """GET /export{query} to its end (or until `stop` is set), keeping only its two ends."""
    received = Download()
    started = time.perf_counter()
    with requests.get(
        f"{server.url}/export{query}", headers=AUTHORIZATION, stream=True, timeout=600
    ) as answer:
        if answer.status_code != 200:
            sys.exit(f"/export{query} answered {answer.status_code}: {answer.text[:300]}")
        received.announced = int(answer.headers["X-Export-Rows"])
        for chunk in answer.iter_content(chunk_size=1 << 16):
            received.add(chunk)
            if stop is not None and stop.is_set():
                break
    received.seconds = time.perf_counter() - started
    return received


def edges(received, output_format):
    """The first and the last whole lines received, each read by pandas into a table."""
    head = bytes(received.head[: received.head.rindex(b"\n") + 1])
    tail = b"".join(received.tail)
    tail = tail[tail.index(b"\n") + 1 :]  # from the first whole line
    if output_format == "csv":
        header = head[: head.index(b"\n") + 1]
        tail = header + tail
        return pd.read_csv(io.BytesIO(head)), pd.read_csv(io.BytesIO(tail))
    return pd.read_json(io.BytesIO(head), lines=True), pd.read_json(io.BytesIO(tail), lines=True)


def check(received, output_format, query, rows):
    """The rows counted are the rows expected; the row_ids run 1, 2, ... rows at both ends."""
    counted = received.lines - (output_format == "csv")  # the CSV's header line
    if (counted, received.announced) != (rows, rows):
        sys.exit(f"/export{query} sent {counted:,} rows (announced {received.announced:,}), "
                 f"not {rows:,}")  # fmt: skip
    first, last = edges(received, output_format)
    ids = [*first["row_id"], *last["row_id"]]
    expected = [*range(1, len(first) + 1), *range(rows - len(last) + 1, rows + 1)]
    if ids != expected or first["proba"].isna().any() or last["proba"].isna().any():
        sys.exit(f"/export{query}: its first and last rows are not rows 1.. and ..{rows:,}, "
                 "each with its proba")  # fmt: skip


@dataclass
class Measured:
    output_format: str
    rows: int
    received: Download
    peak_mib: float | None  # the workers' peak above what they held; None: not measurable


def measure_export(server, query, rows, output_format):
    """Download /export{query}, check it, and the workers' peak memory meanwhile."""
    pids = worker_pids(server)
    before = {pid: memory_kib(pid, "VmRSS") for pid in pids}
    peaks_reset = all(reset_peak_memory(pid) for pid in pids)
    received = download(server, query)
    peak = max(memory_kib(pid, "VmHWM") - before[pid] for pid in pids) / 1024
    check(received, output_format, query, rows)
    return Measured(output_format, rows, received, peak if peaks_reset else None)


def measure_exports(server, start, moments):
    """Each format: a warm-up (the last rows), the first tenth, then the whole table."""
    rows, until = len(moments), start + timedelta(days=3)
    tenth = int(np.count_nonzero(moments < np.datetime64(until, "us")))
    measured = []
    for output_format in ("csv", "jsonl"):
        prefix = "?format=jsonl&" if output_format == "jsonl" else "?"
        download(server, f"{prefix}after_id={max(0, rows - WARM_UP_ROWS)}")
        for query, expected in ((f"until={until.isoformat()}Z", tenth), ("", rows)):
            query = f"{prefix}{query}".rstrip("?&")
            measured.append(measure_export(server, query, expected, output_format))
    return measured


def export_again_and_again(server, stop, exported, failures):
    """Download /export, whole, again and again until stop; the rows received in `exported`."""
    while not stop.is_set():
        try:
            exported.append(download(server, "", stop).lines - 1)
        except (requests.RequestException, SystemExit) as error:
            failures.append(f"/export: {error}")
            return


def measure_predict(name, target, server):
    """wrk at 16 connections for 10 s alone, then while /export is downloaded again and again."""
    shape = throughput.request_shape(".")
    first_ids = iter(range(FIRST_WRK_ID, 10**18, throughput.RUN_IDS))
    throughput.run_wrk(target, 4, 2, next(first_ids), shape)  # warm up, not counted
    alone = throughput.run_wrk(target, CONNECTIONS, WRK_SECONDS, next(first_ids), shape)
    stop, exported, failures = threading.Event(), [], []
    exporter = threading.Thread(
        target=export_again_and_again, args=(server, stop, exported, failures)
    )
    exporter.start()
    try:
        during = throughput.run_wrk(target, CONNECTIONS, WRK_SECONDS, next(first_ids), shape)
    finally:
        stop.set()
        exporter.join()
    errors = sum(run["non_2xx"] + run["missing"] for run in (alone, during)) + len(failures)
    for label, run in (("alone", alone), ("during /export", during)):
        print(f"[{name}] /predict at {CONNECTIONS} connections, {label}: {run['rps']:.0f} "
              f"req/s, p50 {run['p50']:.1f} ms, p99 {run['p99']:.1f} ms", flush=True)  # fmt: skip
    print(f"[{name}] /export sent {sum(exported):,} rows meanwhile; errors: {errors} "
          f"{failures[:1]}", flush=True)  # fmt: skip
    return {"alone": alone, "during": during, "exported": sum(exported), "errors": errors}


def measure(name, database_url, rows, passengers):
    started = time.perf_counter()
    start, moments, last_id = fill(database_url, rows, passengers)
    result = {"database": name, "rows": rows, "fill": time.perf_counter() - started}
    print(f"\n[{name}] stored {rows:,} rows in {result['fill']:.1f} s", flush=True)
    started = time.perf_counter()
    server = LiveServer(database_url, workers=2, env={"ADMIN_TOKEN": TOKEN, "CHALLENGER_DIR": ""})
    try:
        server.wait_until_ready(READY_SECONDS)
        result["startup"] = time.perf_counter() - started
        print(f"[{name}] start-up: {result['startup']:.1f} s", flush=True)
        result["exports"] = measure_exports(server, start, moments)
        print_exports([result])
        target = WrkTarget(server, database_url, last_id)
        result["predict"] = measure_predict(name, target, server)
    finally:
        server.stop()
    return result


def print_exports(results):
    print("| database | format | rows | seconds | rows/s | MB | peak MiB, first tenth | "
          "peak MiB, all |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for result in results:
        measured = result["exports"]
        for tenth, whole in zip(measured[::2], measured[1::2], strict=True):
            seconds = whole.received.seconds
            peaks = ["n/a" if m.peak_mib is None else f"{m.peak_mib:+.1f}" for m in (tenth, whole)]
            print(f"| {result['database']} | {whole.output_format} | {whole.rows:,} | "
                  f"{seconds:.1f} | {whole.rows / seconds:,.0f} | "
                  f"{whole.received.size / 1e6:.0f} | {' | '.join(peaks)} |")  # fmt: skip


def print_predictions(results):
    print(f"\n/predict: wrk, {CONNECTIONS} connections, {WRK_SECONDS} s, p50 / p99 (ms)")
    print("| database | rows | fill s | start-up s | /predict alone | during /export | "
          "p99 ratio | rows exported meanwhile |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for result in results:
        predict = result["predict"]
        alone, during = predict["alone"], predict["during"]
        print(f"| {result['database']} | {result['rows']:,} | {result['fill']:.1f} | "
              f"{result['startup']:.1f} | {alone['p50']:.1f} / {alone['p99']:.1f} | "
              f"{during['p50']:.1f} / {during['p99']:.1f} | "
              f"{during['p99'] / alone['p99']:.2f}x | {predict['exported']:,} |")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", help="a PostgreSQL database: ALL its tables are dropped")
    options = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk (make bench-export does it)")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        # `import app` builds an app at once: on a scratch database, and the model served.
        os.environ.update(DATABASE_URL=f"sqlite:///{folder}/scratch.db", CHALLENGER_DIR="")
        sys.path.insert(0, str(ROOT))
        from app import app  # noqa: PLC0415

        passengers = Passengers(app.config["MODEL"])
        databases = {"sqlite": f"sqlite:///{folder}/export.db"}
        if options.postgres_url:
            databases["postgresql"] = options.postgres_url
        for name, url in databases.items():
            results.append(measure(name, url, options.rows, passengers))
    print(f"\nGET /export of {options.rows:,} rows; peak MiB: the workers' peak resident "
          "memory above what they held before")  # fmt: skip
    print_exports(results)
    print_predictions(results)
    sys.exit(1 if any(result["predict"]["errors"] for result in results) else 0)


if __name__ == "__main__":
    main()
