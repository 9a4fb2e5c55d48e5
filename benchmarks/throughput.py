"""How many /predict requests per second a local gunicorn server answers, and whether
every answered prediction was stored.

    python benchmarks/throughput.py [--requests 3000] [--clients 16] [--workers 2]
                                    [--database-url postgresql://...]

It starts the server itself (SQLite in a temporary folder unless --database-url is given),
sends requests with unique ids from concurrent clients on this machine, then counts the
rows. The client shares the CPU with the server, so compare runs on the same machine.
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from playhouse.db_url import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from live_server import LiveServer  # noqa: E402

OBSERVATION = {"Pclass": 2, "Sex": "female", "Age": 27.0, "SibSp": 0, "Parch": 0,
               "Fare": 13.0, "Cabin": None, "Embarked": "S"}  # fmt: skip


def send_all(url, total, clients):
    """POST /predict `total` times from `clients` threads; return latencies and statuses."""
    sessions = threading.local()

    def send(observation_id):
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        started = time.perf_counter()
        response = sessions.session.post(
            f"{url}/predict", json={"id": observation_id, "observation": OBSERVATION}, timeout=30
        )
        return time.perf_counter() - started, response.status_code

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(send, range(total)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url")
    options = parser.parse_args()

    database_url = options.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    with connect(database_url) as database:
        database.execute_sql("DROP TABLE IF EXISTS prediction")
    server = LiveServer(database_url, workers=options.workers).wait_until_ready()
    try:
        send_all(server.url, 50, options.clients)  # warm up: connections, caches
        with connect(database_url) as database:
            database.execute_sql("DELETE FROM prediction")
        started = time.perf_counter()
        results = send_all(server.url, options.requests, options.clients)
        elapsed = time.perf_counter() - started
    finally:
        server.stop()

    with connect(database_url) as database:
        rows = database.execute_sql("SELECT count(*) FROM prediction").fetchone()[0]
    latencies = sorted(latency for latency, _ in results)
    answered = sum(status == 200 for _, status in results)
    print(f"server: gunicorn, {options.workers} workers, {database_url.split(':')[0]}")
    print(f"requests: {len(results)} from {options.clients} clients in {elapsed:.1f} s")
    print(f"throughput: {len(results) / elapsed:.0f} requests/s")
    print(f"latency: median {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms")  # fmt: skip
    print(f"200: {answered}, other: {len(results) - answered}, rows stored: {rows}")
    return 0 if answered == rows == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
