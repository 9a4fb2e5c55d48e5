"""gunicorn settings, read from the environment the way Railway and Heroku set it.

gunicorn reads this file by itself when it starts in this folder: `gunicorn app:app`.
"""

import gc
import os

# Railway tells the app which port to listen on through $PORT.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# Processes that serve requests. Sync workers, one request at a time each: the work is
# CPU-bound (pandas + scikit-learn hold the GIL), and unlike threaded workers with
# keep-alive they spread one client's connections over all workers.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"

# Load the model once in the master process, before forking: the workers share its
# memory, and a broken artifact stops the server at once with a clear message.
preload_app = True


def pre_fork(server, worker):
    # Move everything loaded so far out of the garbage collector's sight: a collection in
    # a worker would otherwise write to those shared pages and make private copies of them.
    gc.freeze()


# A worker that takes longer than this on one request is killed and replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10

# Access and error logs on stdout/stderr, where Railway collects them.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")

# gunicorn 27's control socket (~/.gunicorn/gunicorn.ctl) is for managing a server by
# hand; one path per user means two servers on one machine would fight over it.
control_socket_disable = True
