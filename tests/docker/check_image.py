"""Run the built image the way the README documents and check what a Docker
user gets: scripts/docker_test builds the image, starts a Docker daemon and
Redis, then runs this (not a pytest module: it needs that daemon).

    python -m tests.docker.check_image --image infer:docker-test --redis-url redis://127.0.0.1:PORT/0

One web container (gunicorn) and one queue worker container share a data
volume (SQLite, local storage: one host), both with the documented options
(RUN_OPTIONS) and nothing more. Checked, in order:

0. the sandbox is available with those options and not without any one of
   them (its start-up probe, in a container of the image);
1. the web container is ready and its sandbox is available (/readyz);
2. a built-in task answers (text-vectorisation, english);
3. a code model (inference.py) uploads, the worker container takes its build
   (the web process only queues it), and the web container serves it;
4. both containers' health checks pass: HTTP for the web, Redis for the worker;
5. the worker's main process killed with SIGKILL (a crash: Docker restarts the
   container under its restart policy, same host name, same pid 1) registers
   again at once, without RQ's "active worker named ... already", and takes
   the next build.

Every container it started is removed at the end (--keep leaves them).
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.uploads.helpers import inference_zip

# The documented `docker run` options (docs/operations/docker.md): bubblewrap as root
# makes mount, PID, IPC, UTS, cgroup and network namespaces (SYS_ADMIN; Docker's
# default seccomp profile refuses its pivot_root even then) and brings up the
# new network namespace's loopback (NET_ADMIN). AppArmor, where the host runs
# it, needs `--security-opt apparmor=unconfined` too (this machine has none).
RUN_OPTIONS = ["--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--security-opt", "seccomp=unconfined"]
PREFIX = "infer-docker-test"
HEALTH_FILE = "/tmp/worker.health"
ACTIVE_WORKER_CLASH = "There exists an active worker named"


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def until(what: str, condition, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Api:
    def __init__(self, base: str):
        self.base = base
        self.key = ""

    def call(self, method: str, path: str, body=None, raw: bytes | None = None, content_type="application/json"):
        """(status, parsed JSON or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        url = path if path.startswith("http") else self.base + path
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"x-api-key": self.key, "content-type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return 0, None
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text


class Containers:
    def __init__(self, image: str, redis_url: str, volume: str):
        self.image = image
        self.redis_url = redis_url
        self.volume = volume
        self.names: list[str] = []

    def run(self, name: str, env: dict, command: list[str], health: list[str]) -> str:
        name = f"{PREFIX}-{name}"
        docker("rm", "-f", name, check=False)
        env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        # --network host: this test's daemon has no bridge (no iptables here).
        docker("run", "-d", "--name", name, "--network", "host", "--restart", "unless-stopped", *RUN_OPTIONS,
               "-v", f"{self.volume}:/data", *env_args, *health, self.image, *command)
        self.names.append(name)
        return name

    def logs(self, name: str) -> str:
        result = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=60)
        return result.stdout + result.stderr

    def health(self, name: str) -> str:
        return docker("inspect", "-f", "{{.State.Health.Status}}", name)

    def remove(self) -> None:
        for name in self.names:
            docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", self.volume, check=False)


SANDBOX_PROBE = "from sandbox.runner import Sandbox; print(Sandbox().problem() or 'available')"


def check_options_are_minimal(image: str) -> None:
    """The sandbox's own start-up probe (what /readyz reports) with the
    documented options, then with each one left out: only all of them work."""
    def probe(options: list[str]) -> str:
        return docker("run", "--rm", "--network", "host", *options, image, "python", "-c", SANDBOX_PROBE,
                      timeout=300).splitlines()[-1]
    assert probe(RUN_OPTIONS) == "available", probe(RUN_OPTIONS)
    for index in range(0, len(RUN_OPTIONS), 2):
        without = RUN_OPTIONS[:index] + RUN_OPTIONS[index + 2:]
        problem = probe(without)
        assert problem.startswith("bwrap fails here"), (RUN_OPTIONS[index:index + 2], problem)
        step(f"without {' '.join(RUN_OPTIONS[index:index + 2])}: {problem[:110]}...")
    step(f"sandbox available with {' '.join(RUN_OPTIONS)}, and not without any one of them")


def wait_built(api: Api, name: str, timeout: float = 600) -> dict:
    def finished():
        status, details = api.call("GET", f"/models/{name}")
        return details if status == 200 and details["build_status"] not in ("building", "awaiting_upload") else None
    return until(f"the build of {name}", finished, timeout, every=2)


def upload_code_model(api: Api, name: str, scale: str) -> dict:
    status, url = api.call("POST", "/upload-url", {"model_name": name})
    assert status == 200, (status, url)
    status, answer = api.call("PUT", url, raw=inference_zip(scale), content_type="application/zip")
    assert status == 200, (status, answer)
    return wait_built(api, name)


def step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", required=True)
    parser.add_argument("--redis-url", required=True, help="a Redis the containers reach (they use the host's network)")
    parser.add_argument("--keep", action="store_true", help="leave the containers and their volume for a look")
    args = parser.parse_args()

    port = free_port()
    env = {"INFER_QUEUE_URL": args.redis_url, "INFER_BIND": f"127.0.0.1:{port}", "INFER_WORKERS": "1",
           "INFER_TORCH_THREADS": "1", "INFER_PRELOAD_MODELS": "text-vectorisation:english", "HF_HUB_OFFLINE": "1"}
    containers = Containers(args.image, args.redis_url, f"{PREFIX}-data-{port}")
    api = Api(f"http://127.0.0.1:{port}")
    started = time.monotonic()
    check_options_are_minimal(args.image)
    try:
        # The image's own HEALTHCHECK command, checked more often than its default 30 s.
        web = containers.run("web", env, [], ["--health-interval", "3s"])
        step(f"web container {web} started on port {port}; waiting for /readyz")
        status, ready = until("/readyz to answer 200", lambda: (lambda r: r if r[0] == 200 else None)(
            api.call("GET", "/readyz")), timeout=600, every=2)
        isolation = ready["checks"]["user_code_isolation"]
        step(f"ready; sandbox: {json.dumps(isolation)}")
        assert isolation["available"], isolation
        # Its output is a log, not a terminal: the first key is in the data volume, never in the log.
        api.key = docker("exec", web, "cat", "/data/first-api-key").strip()
        assert api.key.startswith("ik_"), api.key
        assert api.key not in containers.logs(web) and "/data/first-api-key" in containers.logs(web)

        status, answer = api.call("POST", "/text-vectorisation", {"text": "hello there", "model": "english"})
        assert status == 200 and len(answer["vector"]) == 384, (status, answer)
        step("built-in task answered: text-vectorisation english, 384 numbers")

        worker = containers.run(
            "worker", env, ["flask", "--app", "wsgi", "worker", "--health-file", HEALTH_FILE],
            ["--health-cmd", f"python -m app.worker_health {HEALTH_FILE}", "--health-interval", "3s"])
        step(f"worker container {worker} started")
        details = upload_code_model(api, "coder-one", "2")
        assert details["build_status"] == "success", details
        assert re.search(r"claimed \S+", containers.logs(worker)), "the worker's log shows no claimed job"
        status, answer = api.call("POST", "/text-vectorisation", {"text": "abc", "model": "coder-one"})
        assert status == 200 and answer["vector"] == [6.0, 1.0], (status, answer)
        status, answer = api.call("POST", "/custom", {"numbers": [1, 2, 3], "model": "coder-one"})
        assert status == 200 and answer["output"] == {"sum": 6}, (status, answer)
        step("code model built by the worker container and answered by the web container")

        until("both containers healthy", lambda: containers.health(web) == "healthy" and
              containers.health(worker) == "healthy", timeout=180, every=2)
        step("health checks: web healthy (HTTP), worker healthy (its Redis record)")

        pid = int(docker("inspect", "-f", "{{.State.Pid}}", worker))
        name_before = docker("exec", worker, "cat", HEALTH_FILE)
        os.kill(pid, signal.SIGKILL)  # not `docker kill`, which Docker counts as a wanted stop and never restarts
        killed_at = time.monotonic()
        step(f"worker's pid 1 ({pid} on the host, worker {name_before}) killed with SIGKILL")
        until("Docker to restart the worker container", lambda: docker(
            "inspect", "-f", "{{.RestartCount}} {{.State.Running}}", worker) == "1 true", timeout=120)
        name_after = until("the restarted worker to write its name", lambda: (lambda n: n if n and n != name_before
                           else None)(docker("exec", worker, "cat", HEALTH_FILE, check=False)), timeout=300)
        from redis import Redis
        until(f"worker {name_after} to register in Redis", lambda: Redis.from_url(args.redis_url).exists(
            f"rq:worker:{name_after}"), timeout=120)
        step(f"restarted worker {name_after} registered {time.monotonic() - killed_at:.0f} s after the kill")
        assert ACTIVE_WORKER_CLASH not in containers.logs(worker), containers.logs(worker)[-3000:]
        claims_before = len(re.findall(r"claimed \S+", containers.logs(worker)))
        details = upload_code_model(api, "coder-two", "3")
        assert details["build_status"] == "success", details
        assert len(re.findall(r"claimed \S+", containers.logs(worker))) > claims_before, "no claim after restart"
        status, answer = api.call("POST", "/text-vectorisation", {"text": "abc", "model": "coder-two"})
        assert status == 200 and answer["vector"] == [9.0, 1.0], (status, answer)
        until("the restarted worker healthy", lambda: containers.health(worker) == "healthy", timeout=180, every=2)
        step("restarted worker took the next build; health check healthy again")
        step(f"all checks passed in {time.monotonic() - started:.0f} s")
        return 0
    except BaseException:
        for name in containers.names:
            print(f"----- docker logs {name} (last 4000 characters)", file=sys.stderr)
            print(containers.logs(name)[-4000:], file=sys.stderr)
        raise
    finally:
        if not args.keep:
            containers.remove()


if __name__ == "__main__":
    sys.exit(main())
