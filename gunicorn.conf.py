"""gunicorn settings, read from the environment the way Railway and Heroku set it.

gunicorn reads this file by itself when it starts in this folder: `gunicorn app:app`.
"""

import gc
import os
import random

# Railway tells the app which port to listen on through $PORT.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# Processes that serve requests: about one per core, since scoring keeps a core busy.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# gevent workers: each connection is a greenlet, not a thread, so a worker holds
# thousands of connections at once. Requests in flight together are scored in one
# predict_proba call and stored in one transaction (batching.py), and a client that sends
# its request slowly costs a little memory instead of a whole worker.
worker_class = "gevent"
worker_connections = int(os.environ.get("WORKER_CONNECTIONS", "1000"))

# Seconds an idle kept-alive connection stays open. In gevent workers it also bounds how
# long a client may take to send a request's headers: slower ones are dropped.
keepalive = int(os.environ.get("KEEPALIVE", "5"))

# Load the model once in the master process, before forking: the workers share its
# memory, and a broken artifact stops the server at once with a clear message.
preload_app = True


def pre_fork(server, worker):
    # Move everything loaded so far out of the garbage collector's sight: a collection in
    # a worker would otherwise write to those shared pages and make private copies of them.
    gc.freeze()


def post_worker_init(worker):
    # In the worker, after gevent's monkey-patching: what holds locks is made anew there.
    from app import start_worker

    start_worker(worker.wsgi)


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
