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
        """The API keys the server printed (the first start prints one)."""
        return re.findall(r"ik_[A-Za-z0-9_-]+", self.log())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def production_server(folder, **environ):
    """Start it, wait until /readyz answers 200, and stop it after; `environ`
    adds to (or overrides) the environment it starts with."""
    folder = str(folder)
    port = _free_port()
    log_path = os.path.join(folder, "server.log")
    env = {**os.environ, "INFER_DATA_DIR": os.path.join(folder, "data"), "INFER_BIND": f"127.0.0.1:{port}",
           "PROMETHEUS_MULTIPROC_DIR": os.path.join(folder, "metrics"), **environ}
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ProductionServer(folder, port, process, log_path)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"gunicorn exited: {server.log()}")
            try:
                if requests.get(server.url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or a worker still booting
                time.sleep(0.3)
        else:
            raise AssertionError(server.log())
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
