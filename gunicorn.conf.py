"""gunicorn settings, read from the environment the way Railway and Heroku set it.

gunicorn reads this file by itself when it starts in this folder: `gunicorn app:app`.
"""

import atexit
import gc
import os
import random
import shutil
import tempfile
from pathlib import Path

from gevent import monkey

# gevent makes the standard library's waiting parts (sockets, locks, thread-locals)
# cooperative. Its gunicorn workers do that after the fork: too late for an app preloaded
# in the master, whose objects (peewee's connection state, for one) would stay per thread,
# shared by every request of a worker. So it is done here, before the app is imported.
monkey.patch_all()

# Railway tells the app which port to listen on through $PORT.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# Processes that serve requests: about one per core, since scoring keeps a core busy.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# gevent workers: each connection is a greenlet, not a thread, so a worker holds
# thousands of connections at once. Requests in flight together are scored in one
# predict_proba call and stored in one transaction (model_service/batching.py), and a client
# that sends its request slowly costs a little memory instead of a whole worker.
worker_class = "gevent"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))

# Seconds an idle kept-alive connection stays open. In gevent workers it also bounds how
# long a client may take to send a request's headers: slower ones are dropped.
keepalive = int(os.environ.get("KEEPALIVE", "5"))

# Load the model once in the master process, before forking: the workers share its
# memory, and a broken artifact stops the server at once with a clear message.
preload_app = True


# Prometheus metrics (model_service/monitoring/metrics.py, GET /metrics): each worker writes
# its counts to files in this folder, and /metrics adds up the files of all the workers.
# prometheus_client reads the variable when the app is imported, so it is set here, before
# that: a new temporary folder for each server, unless you choose one.
def remove_metrics_folder(folder, master_pid):
    # Workers inherit this exit handler: only the master, which made the folder, removes it.
    if os.getpid() == master_pid:
        shutil.rmtree(folder, ignore_errors=True)


if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-")
    # At exit, also when the app cannot start (sys.exit before any server hook runs).
    atexit.register(remove_metrics_folder, os.environ["PROMETHEUS_MULTIPROC_DIR"], os.getpid())
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)


def on_starting(server):
    # Counts left in the folder by an earlier server would be added to this one's.
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    # A worker died or was replaced: what it counted stays counted, its live gauges go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def pre_fork(server, worker):
    # Move everything loaded so far out of the garbage collector's sight: a collection in
    # a worker would otherwise write to those shared pages and make private copies of them.
    gc.freeze()


# A kept-alive connection stays on the worker that accepted it, so one client with a
# few connections can keep one worker busy while the other idles. Closing a small share
# of connections after their response lets clients reconnect to whichever worker is free.
REBALANCE_SHARE = float(os.environ.get("KEEPALIVE_REBALANCE", "0.1"))


def pre_request(worker, req):
    if random.random() < REBALANCE_SHARE:
        req.must_close = True


# A worker that does not report to the master for this long is killed and replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10

# Access and error logs on stdout/stderr, where Railway collects them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")

# gunicorn 27's control socket (~/.gunicorn/gunicorn.ctl) is for managing a server by
# hand; one path per user means two servers on one machine would fight over it.
control_socket_disable = True
