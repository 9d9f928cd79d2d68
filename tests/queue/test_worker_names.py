"""A worker started without --name gets a new name on every start, so one
killed and started again (a container restarted: same host name, same pid 1)
registers at once instead of RQ's "There exists an active worker named ...
already" until the dead one's record expires; `python -m app.worker_health`
follows the worker named in its --health-file."""

import os
import signal
import subprocess
import sys
import time

from redis import Redis
from rq import Worker

from app.worker_cli import unique_worker_name

from .workers import ROOT, environment

HEALTH = [sys.executable, "-m", "app.worker_health"]


def _start(config: dict, health_file: str, log_path: str) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--health-file", health_file],
                                cwd=ROOT, env=environment(config), stdout=log, stderr=subprocess.STDOUT)


def _registered_name(process: subprocess.Popen, health_file: str, redis_url: str, log_path: str,
                     previous: str = "") -> str:
    """The name the worker wrote to its health file (over `previous`), once RQ lists it."""
    connection = Redis.from_url(redis_url)
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, open(log_path, errors="replace").read()
        assert time.monotonic() < deadline, "the worker did not register"
        if os.path.exists(health_file):
            name = open(health_file).read().strip()
            if name != previous and name in {worker.name for worker in Worker.all(connection=connection)}:
                return name
        time.sleep(0.1)


def _health(health_file: str, redis_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HEALTH, health_file], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "INFER_QUEUE_URL": redis_url})


def test_default_names_are_new_on_every_start():
    names = {unique_worker_name() for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith(f"{os.uname().nodename}.{os.getpid()}.") for name in names)


def test_a_killed_worker_starts_again_at_once_and_its_health_follows_it(redis_url, tmp_path):
    config = {"QUEUE_URL": redis_url, "DATA_DIR": str(tmp_path / "data"), "TORCH_THREADS": 1}
    health_file = str(tmp_path / "worker.health")
    log_path = str(tmp_path / "worker.log")

    assert "no worker name" in _health(health_file, redis_url).stdout  # before the worker wrote it

    first = _start(config, health_file, log_path)
    first_name = _registered_name(first, health_file, redis_url, log_path)
    healthy = _health(health_file, redis_url)
    assert (healthy.returncode, healthy.stdout.strip()) == (0, "worker registered in Redis")

    first.send_signal(signal.SIGKILL)  # no clean-up: its record stays in Redis until its TTL
    first.wait()
    assert first_name in {worker.name for worker in Worker.all(connection=Redis.from_url(redis_url))}

    second = _start(config, health_file, log_path)
    try:
        second_name = _registered_name(second, health_file, redis_url, log_path, previous=first_name)
        # It registered while the killed one's record still lives.
        assert {first_name, second_name} <= {worker.name for worker in Worker.all(connection=Redis.from_url(redis_url))}
        assert _health(health_file, redis_url).returncode == 0
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    stopped = _health(health_file, redis_url)  # a stopped worker marks its record dead
    assert stopped.returncode == 1
    assert f"worker {second_name} has stopped" in stopped.stdout or "not registered" in stopped.stdout


def test_health_says_when_redis_does_not_answer(tmp_path):
    health_file = tmp_path / "worker.health"
    health_file.write_text("somehost.1.abcd\n")
    result = _health(str(health_file), "redis://127.0.0.1:1/0")
    assert result.returncode == 1
    assert "Redis (INFER_QUEUE_URL) does not answer" in result.stdout
