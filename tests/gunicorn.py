"""The production server as the README starts it (gunicorn -c gunicorn.conf.py
wsgi:app), on a free port with its data under a test's folder."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import requests

from .servers import free_port, stop_process_group

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ProductionServer:
    def __init__(self, folder: str, port: int, process: subprocess.Popen, log_path: str):
        self.folder = folder
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = process
        self.log_path = log_path

    def log(self) -> str:
        with open(self.log_path) as log:
            return log.read()

    def printed_keys(self) -> list[str]:
        """The first API key (the first start writes it to the data dir's first-api-key,
        as its output is no terminal), then any key its log shows."""
        key_file = os.path.join(self.folder, "data", "first-api-key")
        first = [open(key_file).read().strip()] if os.path.exists(key_file) else []
        return first + [key for key in re.findall(r"ik_[A-Za-z0-9_-]+", self.log()) if key not in first]

    def wait_ready(self, timeout: float = 120) -> "ProductionServer":
        """Until /readyz answers 200 (the database answers, preloaded models are in)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited: {self.log()}")
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:  # not listening yet, or a worker still booting
                pass
            time.sleep(0.3)
        raise AssertionError(self.log())

    def wait_listening(self, timeout: float = 60) -> "ProductionServer":
        """Until the master has bound its port (after it prepared the database)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError(self.log())

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the master: gunicorn's graceful stop (requests in progress finish)."""
        stop_process_group(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL to the master and every process it started, as when its machine dies.

        The server runs in a session of its own, so its process group is
        exactly its processes."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


def start_production_server(folder, port: int | None = None, root: str = ROOT, **environ) -> ProductionServer:
    """Start it without waiting; `port` reuses an address (a restart), `root` is
    the checkout to run (another tree, for a benchmark against it), `environ`
    adds to (or overrides) the environment it starts with. Its data dir is
    <folder>/data, so a server started again in the same folder finds its data."""
    folder = str(folder)
    port = port or free_port()
    log_path = os.path.join(folder, "server.log")
    env = {**os.environ, "INFER_DATA_DIR": os.path.join(folder, "data"), "INFER_BIND": f"127.0.0.1:{port}",
           "PROMETHEUS_MULTIPROC_DIR": os.path.join(folder, "metrics"), **environ}
    # Appended to: a restart in the same folder keeps the first start's log (and its printed key).
    with open(log_path, "a") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                   cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return ProductionServer(folder, port, process, log_path)


@contextmanager
def production_server(folder, port: int | None = None, root: str = ROOT, **environ):
    """Start it, wait until /readyz answers 200, and stop it after (see start_production_server)."""
    server = start_production_server(folder, port, root, **environ)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
