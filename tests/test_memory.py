"""Memory of the whole server (master + 2 workers) after start-up and after 20,000 requests.

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
    predict_bodies,
    random_observations,
    send_all,
    server_memory_kib,
    stored_rows,
    wait_for_workers,
)

pytestmark = pytest.mark.slow

REQUESTS = 20_000
WARM_UP = 2_000  # the first requests fill caches and the heap once; counted in REQUESTS
# Bounds, in KiB. From start-up to the end, each worker may need memory of its own to
# serve (buffers, frames, SQLite's cache: about 20 MiB here), but the rest of what it maps
# must stay shared with the master: when a worker's garbage collector writes to every
# object it inherited, each worker copies ~50 MiB and the total grows by ~110 MiB.
# Between the warm-up and the end, nothing may grow with the number of requests.
TOTAL_GROWTH = 2 * 32 * 1024
GROWTH_AFTER_WARM_UP = 10 * 1024


def snapshot(server, label, figures):
    memory = server_memory_kib(server)
    figures[label] = memory
    print(
        f"\n[memory] {label}: PSS {memory['pss'] / 1024:.1f} MiB, "
        f"RSS {memory['rss'] / 1024:.1f} MiB over {memory['processes']} processes"
    )
    return memory


def test_memory_is_shared_and_does_not_grow_with_requests(start_server, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'predictions.db'}"
    server = start_server(database_url, workers=2)
    figures = {}
    workers = wait_for_workers(server, 2)
    time.sleep(1)  # let the second worker finish booting
    started = snapshot(server, "after start-up", figures)

    # preload: the workers were forked after the model was loaded, and share its pages.
    for pid in workers:
        assert memory_kib(pid, "Pss") < 0.6 * memory_kib(pid, "Rss"), "the model is not shared"

    observations = random_observations(500, seed=51)  # repeated: only the ids are new
    ids = list(range(1, REQUESTS + 1))
    bodies = predict_bodies(ids, [observations[i % 500] for i in range(REQUESTS)])
    url = f"{server.url}/predict"

    first = send_all([("POST", url, b) for b in bodies[:WARM_UP]], 16, deadline_seconds=120)
    warm = snapshot(server, f"after {WARM_UP} requests", figures)
    rest = send_all([("POST", url, b) for b in bodies[WARM_UP:]], 16, deadline_seconds=360)
    end = snapshot(server, f"after {REQUESTS} requests", figures)

    outcomes = first.outcomes + rest.outcomes
    answered = sum(1 for outcome in outcomes if outcome.status == 200)
    print(
        f"[memory] requests sent={len(outcomes)} 2xx={answered} "
        f"rows stored={len(stored_rows(database_url))}; growth from start-up "
        f"{(end['pss'] - started['pss']) / 1024:.1f} MiB PSS, after the warm-up "
        f"{(end['pss'] - warm['pss']) / 1024:.1f} MiB PSS"
    )
    assert first.skipped == rest.skipped == 0
    assert answered == REQUESTS
    assert gunicorn_workers(server) == workers  # the same workers served everything
    assert end["pss"] - warm["pss"] < GROWTH_AFTER_WARM_UP, figures
    assert end["pss"] - started["pss"] < TOTAL_GROWTH, figures
