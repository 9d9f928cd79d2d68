"""The client of a user model's worker: a closed model refuses calls and never
starts its worker again, even for a call that was waiting; replies are read in
one pass and bounded."""

import subprocess
import sys
import threading
import time

import pytest

from uploads.worker_client import WorkerFailed, WorkerProcess
from web.errors import ModelUnavailable

# A worker speaking the protocol: {"size": n} answers n bytes; {"hang": path} creates
# the file at path and never answers.
FAKE_WORKER = r'''
import json, sys, time
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)["input"]
    if request.get("hang"):
        open(request["hang"], "w").close()
        time.sleep(3600)
    sys.stdout.write(json.dumps({"output": "x" * request.get("size", 1)}) + "\n")
    sys.stdout.flush()
'''


class Launcher:
    """Starts a worker from `source` (FAKE_WORKER unless a test gives its own) and keeps them all."""

    def __init__(self, source: str = FAKE_WORKER):
        self.started: list[subprocess.Popen] = []
        self.source = source
        self.args: list[str] = []  # the worker's sys.argv[1:]

    def __call__(self) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", self.source, *self.args], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        self.started.append(process)
        return process


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


@pytest.fixture
def launcher():
    launcher = Launcher()
    yield launcher
    for process in launcher.started:
        if process.poll() is None:
            stop(process)


def worker(launcher, max_reply_bytes=1 << 20, call_timeout_s=600.0) -> WorkerProcess:
    return WorkerProcess("m", launcher, stop, call_timeout_s=call_timeout_s, load_timeout_s=60,
                         max_reply_bytes=max_reply_bytes)


def test_a_closed_model_refuses_calls_with_503_and_never_starts_a_worker(launcher):
    client = worker(launcher)
    assert client.call("custom", {"size": 3}) == "xxx"

    client.close()

    with pytest.raises(ModelUnavailable) as refused:
        client.call("custom", {"size": 3})
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    assert len(launcher.started) == 1 and launcher.started[0].poll() is not None


def test_closing_ends_a_call_that_is_waiting_on_its_worker_and_kills_the_worker(launcher, tmp_path):
    client = worker(launcher, call_timeout_s=600)
    hanging = tmp_path / "hanging"
    outcome = {}

    def hanging_call():
        try:
            client.call("custom", {"hang": str(hanging)})
        except Exception as exc:  # noqa: BLE001 - the test looks at what it was
            outcome["error"] = exc

    caller = threading.Thread(target=hanging_call)
    caller.start()
    while not hanging.exists():  # the worker has the call and will never answer it
        caller.join(timeout=0.01)
    client.close()
    caller.join(timeout=60)

    assert not caller.is_alive()  # not held for the call's 600 s timeout
    assert isinstance(outcome["error"], ModelUnavailable)
    assert all(process.poll() is not None for process in launcher.started)
    assert len(launcher.started) == 1


def test_a_reply_over_the_limit_fails_that_call_and_restarts_the_worker(launcher):
    client = worker(launcher, max_reply_bytes=1 << 20)

    with pytest.raises(WorkerFailed) as failed:
        client.call("custom", {"size": 2 << 20})

    assert "INFER_WORKER_MAX_REPLY_MB" in failed.value.message
    assert launcher.started[0].poll() is not None  # killed, not left writing
    assert client.call("custom", {"size": 5}) == "xxxxx"  # a fresh worker
    assert len(launcher.started) == 2


def test_a_large_reply_arriving_in_many_reads_comes_back_whole(launcher):
    client = worker(launcher, max_reply_bytes=64 << 20)

    assert client.call("custom", {"size": 20 << 20}) == "x" * (20 << 20)
    assert client.call("custom", {"size": 2}) == "xx"


def test_an_answer_nested_deeper_than_responses_can_carry_fails_with_a_message(launcher):
    nested = "[" * 300 + "]" * 300
    launcher.source = ("import sys\nprint('{\"ready\": true}', flush=True)\n"
                       f"for line in sys.stdin:\n    print('{{\"output\": {nested}}}', flush=True)\n")
    client = worker(launcher)

    with pytest.raises(WorkerFailed) as failed:
        client.call("custom", {})
    assert "nested more than 200 levels" in failed.value.message


def test_a_worker_writing_an_endless_line_to_stderr_is_logged_in_pieces(launcher, caplog):
    launcher.source = ("import sys\nsys.stderr.write('e' * 100000); sys.stderr.flush()\n"
                       "print('{\"ready\": true}', flush=True)\nfor line in sys.stdin:\n"
                       "    print('{\"output\": 1}', flush=True)\n")
    client = worker(launcher)

    with caplog.at_level("INFO", logger="uploads.worker_client"):
        assert client.call("custom", {}) == 1
        client.close()

        def pieces():
            return [r.getMessage() for r in caplog.records if r.getMessage().startswith("[m] e")]

        deadline = time.monotonic() + 30  # the log thread reads what the worker left in the pipe
        while sum(len(p) - len("[m] ") for p in pieces()) < 100000 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sum(len(p) - len("[m] ") for p in pieces()) == 100000  # all of it, in pieces
    assert max(len(p) for p in pieces()) <= 2000 + len("[m] ")
