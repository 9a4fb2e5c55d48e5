"""Memory of the whole server (master + 2 workers) after start-up and after 6,000 requests.

PSS (proportional set size, /proc/PID/smaps_rollup) splits each shared page among the
processes that map it, so the sum over the processes is what the server really costs:
it stays low only while the workers share the model the master loaded before forking
(gunicorn's preload_app). Run with `pytest -s` to see the figures.
"""

import time

import pytest
from reliability_helpers import (
    gunicorn_workers,
    memory_kib,
    post_quickly,
    predict_bodies,
    random_observations,
    server_memory_kib,
    stored_rows,
    wait_for_workers,
)

pytestmark = pytest.mark.slow

REQUESTS = 6_000
WARM_UP = 2_000  # the first requests fill caches and the heap once; counted in REQUESTS
CONNECTIONS = 32  # kept alive and busy at once: the workers score what waits together
# The whole server's PSS, after start-up and after the requests: under 276 MB (issue 8).
PSS_LIMIT = 276_000_000 // 1024  # KiB
# Bounds on the growth of the anonymous PSS (server_memory_kib says why not the whole PSS),
# in KiB. From start-up to the end, each worker may need memory of its own to serve
# (buffers, frames, SQLite's cache: about 20 MiB here), but the rest of what it maps must
# stay shared with the master: when a worker's garbage collector writes to every object it
# inherited, each worker copies ~50 MiB and the total grows by ~110 MiB.
# Between the warm-up and the end, nothing may grow with the number of requests.
TOTAL_GROWTH = 2 * 32 * 1024
GROWTH_AFTER_WARM_UP = 10 * 1024


def snapshot(server, label, figures):
    memory = server_memory_kib(server)
    figures[label] = memory
    print(
        f"\n[memory] {label}: PSS {memory['pss'] / 1024:.1f} MiB (anonymous "
        f"{memory['anonymous'] / 1024:.1f} MiB), RSS {memory['rss'] / 1024:.1f} MiB "
        f"over {memory['processes']} processes"
    )
    return memory


def settled(server, seconds=30):
    """Wait until the workers have booted: the server's PSS no longer changes."""
    deadline = time.monotonic() + seconds
    previous = server_memory_kib(server)["anonymous"]
    while time.monotonic() < deadline:
        time.sleep(0.2)
        current = server_memory_kib(server)["anonymous"]
        if abs(current - previous) < 256:  # KiB
            return
        previous = current
    raise AssertionError(f"the server's PSS still changes after {seconds} s")


def test_memory_is_shared_and_does_not_grow_with_requests(start_server, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    server = start_server(database_url, workers=2)
    figures = {}
    workers = wait_for_workers(server, 2)
    settled(server)
    started = snapshot(server, "after start-up", figures)

    # preload: the workers were forked after the model was loaded, and share its pages.
    for pid in workers:
        assert memory_kib(pid, "Pss") < 0.6 * memory_kib(pid, "Rss"), "the model is not shared"

    observations = random_observations(500, seed=51)  # repeated: only the ids are new
    ids = list(range(1, REQUESTS + 1))
    bodies = predict_bodies(ids, [observations[i % 500] for i in range(REQUESTS)])
    url = f"{server.url}/predict"

    started_sending = time.monotonic()
    statuses = post_quickly(url, bodies[:WARM_UP], CONNECTIONS)
    warm = snapshot(server, f"after {WARM_UP} requests", figures)
    statuses += post_quickly(url, bodies[WARM_UP:], CONNECTIONS)
    seconds = time.monotonic() - started_sending
    end = snapshot(server, f"after {REQUESTS} requests", figures)

    answered = statuses.count(200)
    rows = len(stored_rows(database_url))
    print(
        f"[memory] requests sent={len(statuses)} 2xx={answered} rows stored={rows} "
        f"({len(statuses) / seconds:.0f} requests/s over {CONNECTIONS} connections); growth "
        f"of the anonymous PSS from start-up {grown(started, end) / 1024:.1f} MiB, after the "
        f"warm-up {grown(warm, end) / 1024:.1f} MiB"
    )
    assert answered == rows == REQUESTS
    assert gunicorn_workers(server) == workers  # the same workers served everything
    assert started["pss"] < PSS_LIMIT and end["pss"] < PSS_LIMIT, figures
    # Growth is measured on the anonymous pages: the rest depends on other processes.
    assert grown(warm, end) < GROWTH_AFTER_WARM_UP, figures
    assert grown(started, end) < TOTAL_GROWTH, figures


def grown(before, after):
    return after["anonymous"] - before["anonymous"]
