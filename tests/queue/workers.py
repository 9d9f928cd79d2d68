"""Worker processes started with the documented command, `flask --app wsgi worker`,
each with its output in a log file the tests read."""

import os
import re
import signal
import subprocess
import sys
import time

from redis import Redis
from rq import Worker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def environment(config: dict) -> dict:
    """The test process's environment (no INFER_* of its own: conftest removed
    them) with the settings as INFER_* variables, as an operator sets them."""
    env = dict(os.environ)
    env.update({f"INFER_{key}": str(value) for key, value in config.items()})
    env["INFER_BOOTSTRAP_KEY"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    def __init__(self, config: dict, log_path: str, name: str):
        self.log_path = log_path
        self.name = name
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--name", name],
                cwd=ROOT, env=environment(config), stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        with open(self.log_path, errors="replace") as log:
            return log.read()

    def claims(self, table: str) -> list[str]:
        """The ids of the `table` rows this worker claimed, once per claim."""
        return re.findall(rf"claimed {table} (\S+)", self.log())



def start_workers(config: dict, folder: str, count: int, redis_url: str, first: int = 0) -> list[WorkerProcess]:
    """`count` workers, returned once each listens on the queues."""
    workers = [WorkerProcess(config, os.path.join(folder, f"worker{number}.log"), f"worker{number}")
               for number in range(first, first + count)]
    names = {worker.name for worker in workers}
    deadline = time.monotonic() + 120
    connection = Redis.from_url(redis_url)
    while not names <= {worker.name for worker in Worker.all(connection=connection)}:
        for worker in workers:
            assert worker.process.poll() is None, worker.log()
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.1)
    return workers


def stop_workers(workers: list[WorkerProcess]) -> None:
    """SIGTERM them all, then wait for each (killed if it takes too long)."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
