"""A real gunicorn server in a subprocess, for the tests and the benchmark."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """gunicorn running app:app in a subprocess, as `make run` and the Dockerfile run it."""

    def __init__(self, database_url, workers=2, env=None, cwd=ROOT, python=sys.executable):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The log outlives this method: stop() closes it.
        self.log = tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            **(env or {}),
        }
        gunicorn = [python, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app"]
        self.process = subprocess.Popen(
            gunicorn, cwd=cwd, env=environment, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_until_ready(self, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.process.returncode}:\n{self.output()}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not answer /health in {seconds} s:\n{self.output()}")

    def output(self):
        return Path(self.log.name).read_text(errors="replace")

    def stop(self, seconds=15):
        """Stop as Ctrl+C stops `make run`: SIGINT, and the workers quit at once.

        (A graceful stop, SIGTERM, lets each gevent worker finish its requests and takes a
        second or two more; tests of that send SIGTERM themselves.)
        """
        self.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + seconds
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                self.process.wait(timeout=0.25)
            except subprocess.TimeoutExpired:
                # A worker still booting misses the signal the master passes on (it comes
                # before the worker sets its own handlers), and the master would wait
                # graceful_timeout (10 s) for it: tell the workers again until they are gone.
                for pid in child_pids(self.process.pid):
                    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                        os.kill(pid, signal.SIGQUIT)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


def child_pids(pid):
    """The pids whose parent is `pid`, from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended meanwhile
        # Field 4 is the parent pid; field 2 (the name) may contain spaces but ends at ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            children.append(int(entry.name))
    return sorted(children)
