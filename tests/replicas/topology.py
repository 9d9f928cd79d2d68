"""The "Running at scale" topology (docs/operations/scale.md) on 127.0.0.1, for the replica tests: N
production servers (gunicorn.conf.py, each with its own data dir) sharing one
PostgreSQL database, one S3 bucket and one Redis queue, behind
deploy/haproxy.cfg, and a job worker (`flask --app wsgi worker`, its own data
dir too); and a steady load of requests through it that records every failure."""

import os
import signal
import subprocess
import sys
import threading
import time

import requests
from redis import Redis
from rq import Worker

from ..gunicorn import ROOT, start_production_server
from ..haproxy import HAProxy

BUCKET = "replicas"
# Short enough that a test can wait it out; the shipped default is 2 s.
AUTH_CACHE_TTL_S = 1.0


class Topology:
    def __init__(self, folder, database_url: str, s3_endpoint: str, queue_url: str,
                 names=("replica1", "replica2"), **settings):
        self.folder = str(folder)
        self.names = list(names)
        self.queue_url = queue_url
        # What every replica and worker shares: the database, the bucket, the queue, the URL-signing secret.
        self.environ = {
            "DATABASE_URL": database_url, "INFER_QUEUE_URL": queue_url, "INFER_QUEUE_SWEEP_S": "0.5",
            "INFER_STORAGE": "s3", "INFER_S3_BUCKET": BUCKET,
            "INFER_S3_ENDPOINT_URL": s3_endpoint, "INFER_S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "INFER_SECRET_KEY": "replicas-test-secret",
            "INFER_AUTH_CACHE_TTL_S": str(AUTH_CACHE_TTL_S), "INFER_BUILD_POLL_S": "0.3",
            # The real MiniLM, loaded before /readyz says ready: a replica gets
            # traffic only once it can serve it.
            "INFER_PRELOAD_MODELS": "text-vectorisation:english",
            # One worker each: two replicas on a 2-core machine.
            "INFER_WORKERS": "1", "INFER_THREADS": "8", "INFER_TORCH_THREADS": "1",
            **settings,
        }
        self.servers = {}
        self.worker = None
        self.proxy = None
        self.key = None

    def start(self) -> "Topology":
        first, *others = self.names
        # The first one alone until its master has made the schema and the bootstrap key
        # (PostgreSQL's CREATE TABLE is not safe to race); the others boot beside its worker.
        self.servers[first] = self._start(first).wait_listening()
        for name in others:
            self.servers[name] = self._start(name)
        self.worker = self._start_worker()
        for server in self.servers.values():
            server.wait_ready()
        self._wait_worker_listening()
        self.key = self.servers[first].printed_keys()[0]
        self.proxy = HAProxy(os.path.join(self.folder, "haproxy"),
                             {name: f"127.0.0.1:{server.port}" for name, server in self.servers.items()},
                             checks="inter 250ms fall 2 rise 1").start()
        for name in self.names:
            self.proxy.wait_status(name, "UP")
        return self

    def _start(self, name: str, port: int | None = None):
        folder = os.path.join(self.folder, name)
        os.makedirs(folder, exist_ok=True)
        return start_production_server(folder, port, **self.environ)

    def restart(self, name: str):
        """Start a stopped replica again: same address, same data dir."""
        self.servers[name] = self._start(name, self.servers[name].port).wait_ready()
        return self.servers[name]

    @property
    def headers(self) -> dict:
        return {"x-api-key": self.key}

    def url(self, name: str) -> str:
        return self.servers[name].url

    def served(self, name: str) -> int:
        """Requests HAProxy has sent to that replica so far."""
        return int(self.proxy.stats()[name]["stot"])

    def _start_worker(self) -> subprocess.Popen:
        folder = os.path.join(self.folder, "worker")
        os.makedirs(folder, exist_ok=True)
        # Nothing to preload: it runs builds, and loads a model only for an asynchronous prediction.
        environ = {**os.environ, **self.environ, "INFER_DATA_DIR": os.path.join(folder, "data"),
                   "INFER_PRELOAD_MODELS": "", "PYTHONUNBUFFERED": "1"}
        with open(os.path.join(folder, "worker.log"), "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--name", "worker1"],
                                    cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def worker_log(self) -> str:
        with open(os.path.join(self.folder, "worker", "worker.log"), errors="replace") as log:
            return log.read()

    def _wait_worker_listening(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        connection = Redis.from_url(self.queue_url)
        while "worker1" not in {worker.name for worker in Worker.all(connection=connection)}:
            assert self.worker.poll() is None, self.worker_log()
            assert time.monotonic() < deadline, "the job worker did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for server in self.servers.values():
            server.stop()
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)  # hands its job back and stops
            try:
                self.worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()


SENTENCES = ["a steady load of requests", "through the load balancer", "while replicas come and go"]


class SteadyLoad:
    """`clients` threads, each sending POST /text-vectorisation through `url` as soon as
    its last one is answered (and `pause` seconds more), until stopped; every answer
    that is not a 200 with a vector, and every connection error, is a failure."""

    def __init__(self, url: str, key: str, clients: int = 4, pause: float = 0.0):
        self.url, self.key, self.clients, self.pause = url, key, clients, pause
        self.answered = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)]

    def _client(self, number: int) -> None:
        session = requests.Session()
        i = number
        while not self._stop.is_set():
            body = {"text": SENTENCES[i % len(SENTENCES)], "model": "english"}
            i += 1
            try:
                response = session.post(self.url + "/text-vectorisation", json=body,
                                         headers={"x-api-key": self.key}, timeout=60)
                ok = response.status_code == 200 and len(response.json()["vector"]) == 384
                failure = None if ok else f"{response.status_code}: {response.text[:200]}"
            except (requests.RequestException, ValueError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            with self._lock:
                if failure is None:
                    self.answered += 1
                else:
                    self.failures.append(failure)
            self._stop.wait(self.pause)

    def count(self) -> int:
        with self._lock:
            return self.answered + len(self.failures)

    def wait_for(self, more: int, timeout: float = 60) -> None:
        """Until `more` further requests have been answered (or failed)."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            assert time.monotonic() < deadline, f"the load stalled at {self.count()} requests"
            time.sleep(0.02)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(90)
