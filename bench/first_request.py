"""The first requests after the service starts, as scripts/serve starts it.

Each run starts the production server (gunicorn -c gunicorn.conf.py wsgi:app,
its default 2 workers) on a fresh data dir (so a fresh ONNX export cache), with
HF_HUB_OFFLINE=1 and no other INFER_* setting, in one of two modes:

    lazy      INFER_PRELOAD_MODELS empty: the behaviour before scripts/serve
              preloaded (the first request for a model loads it, and the first
              load exports it to ONNX; each worker loads on its own first request)
    preload   INFER_PRELOAD_MODELS=text-vectorisation:english, as scripts/serve
              sets it: each worker loads the model before it accepts a request
              (the first to load builds the export, once, under its file lock;
              the other waits and loads it), a "ready:" line when all have

It waits until the service says it is ready (lazy: /readyz answers 200, which
it does as soon as a worker runs; preload: the "ready:" line), then sends the
README's first request ("First request": two texts, model english) 10 times,
one after the other, each on a new connection. The requests alternate between
the two workers (the other one stopped with SIGSTOP while a request is sent),
so request 1 is one worker's first and request 2 the other's. Also kept: the
seconds from start until the first answer is in hand (what a user waits either
way). Then the same data dir is started again (a restart: the export is kept)
and measured the same way. The machine's load drifts: rounds alternate the modes.

    .venv/bin/python bench/first_request.py [--rounds 1] [--out bench/results/first_request.json]
"""

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUESTS = 10
BODY = json.dumps({"text": ["iPhone 12 128GB", "RTX 3090"], "model": "english"}).encode()
MODES = {"lazy": "", "preload": "text-vectorisation:english"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (gunicorn's workers, once the master forked them)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return sorted(found)


def get(url: str, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


class Server:
    def __init__(self, folder: str, preload: str):
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(folder, "server.log")
        self.key_path = os.path.join(folder, "data", "first-api-key")
        # A restart appends to the first start's log: this start's lines begin here.
        self.log_start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        # As scripts/serve: nothing but the defaults, offline, a data dir of its own.
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("INFER_") and name not in ("DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")}
        env.update(HF_HUB_OFFLINE="1", INFER_DATA_DIR=os.path.join(folder, "data"), INFER_BIND=f"127.0.0.1:{self.port}",
                   INFER_PRELOAD_MODELS=preload, PROMETHEUS_MULTIPROC_DIR=os.path.join(folder, "metrics"))
        self.started = time.monotonic()
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen([os.path.join(ROOT, ".venv/bin/gunicorn"), "-c", "gunicorn.conf.py",
                                             "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def log(self, whole: bool = False) -> str:
        """This start's log lines (`whole`: every start's)."""
        with open(self.log_path) as log:
            log.seek(0 if whole else self.log_start)
            return log.read()

    def key(self) -> str:
        """The API key the first start wrote to the data dir (its output is no terminal)."""
        with open(self.key_path) as key_file:
            return key_file.read().strip()

    def wait(self, ready, timeout: float = 600) -> float:
        """Seconds from start until `ready()` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log()}")
            try:
                if ready():
                    return time.monotonic() - self.started
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"not ready in {timeout} s:\n{self.log()}")

    def workers(self, count: int) -> list[int]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = children(self.process.pid)
            if len(pids) == count:
                return pids
            time.sleep(0.1)
        raise RuntimeError(f"expected {count} workers, have {children(self.process.pid)}")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def post(url: str, key: str) -> float:
    """Seconds for one first-request call, on a new connection; raises unless 200."""
    request = urllib.request.Request(url + "/text-vectorisation", data=BODY, method="POST",
                                     headers={"x-api-key": key, "content-type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        body = json.loads(response.read())
    elapsed = time.perf_counter() - started
    if len(body["vector"]) != 2:  # one vector per text
        raise RuntimeError(f"unexpected answer: {body}")
    return elapsed


def measure(server: Server, mode: str) -> dict:
    if mode == "preload":
        ready_s = server.wait(lambda: "\nready: " in server.log())
    else:
        ready_s = server.wait(lambda: get(server.url + "/readyz") == 200)
    readyz_s = server.wait(lambda: get(server.url + "/readyz") == 200)
    workers = server.workers(2)
    key = server.key()
    latencies = []
    for index in range(REQUESTS):
        serving = workers[index % len(workers)]
        stopped = [pid for pid in workers if pid != serving]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            latencies.append(post(server.url, key))
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        if index == 0:
            first_answer_s = time.monotonic() - server.started
    log = server.log()
    return {
        "ready_s": round(ready_s, 2),
        "readyz_200_s": round(readyz_s, 2),
        # From start to the first answer in hand: what a user waits either way.
        "first_answer_s": round(first_answer_s, 2),
        "request_ms": [round(seconds * 1000, 1) for seconds in latencies],
        "first_ms": round(latencies[0] * 1000, 1),
        "second_worker_first_ms": round(latencies[1] * 1000, 1),
        "tenth_ms": round(latencies[-1] * 1000, 1),
        "exports_built": log.count("built all-MiniLM-L6-v2-vectors"),
        "loads": log.count("loading model all-MiniLM-L6-v2"),
    }


def run(mode: str) -> dict:
    folder = tempfile.mkdtemp(prefix=f"first-request-{mode}-")
    result = {}
    for start in ("fresh", "restart"):
        server = Server(folder, MODES[mode])
        try:
            result[start] = measure(server, mode)
        finally:
            server.stop()
        print(f"{mode:8} {start:8} {result[start]}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "first_request.json"))
    args = parser.parse_args()
    rounds = []
    for number in range(args.rounds):
        # Alternated, so that a drift in the machine's load hits both modes alike.
        rounds.append({mode: run(mode) for mode in (("lazy", "preload") if number % 2 == 0 else ("preload", "lazy"))})
    report = {
        "what": "latency of the README's first request after gunicorn starts (2 workers, fresh data dir, offline); "
                "requests alternate between the workers, so request 2 is the second worker's first",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_at_end": [round(value, 2) for value in os.getloadavg()]},
        "rounds": rounds,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump(report, out, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
