"""Nothing waits on a user model's worker without a deadline.

A model that stops reading its input (a request over a pipe's 64 KiB then
blocks the service's write), answers garbage, or never finishes its line fails
its request in bounded time (504 for a timeout, 502 for garbage), its worker is
killed and restarted on the next call, and the thread is free: through HTTP, as
one account against another's model, on the test server and on gunicorn with
few threads. Taking the worker's lock is bounded too (504: the model is busy),
a caller's own deadline ends a call early, and close() never waits for a call
in progress (unit tests with a fake worker)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from core.errors import ModelUnavailable
from core.tables import UserModel
from uploads.worker_client import WorkerProcess, WorkerTimeout

from ..conftest import LiveServer, new_key, until
from . import hostile
from .helpers import deploy, inference_zip
from .test_worker_client import Launcher, stop

CALL_TIMEOUT_S = 4
BIG = "x" * (256 * 1024)  # four times a pipe's buffer: the write blocks unless the worker reads


def worker_of(app, model_name: str) -> WorkerProcess:
    with app.extensions["db"].sessions() as session:
        version_id = session.query(UserModel).filter_by(name=model_name).one().current_version_id
    return app.extensions["models"].cache.peek(f"user-{version_id}").model


@pytest.fixture
def service(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, WORKER_CALL_TIMEOUT_S=CALL_TIMEOUT_S)
    victim, attacker = api.headers_for("victim"), api.headers_for("attacker")
    assert deploy(api.client, victim, "steady", inference_zip())["build_status"] == "success"
    assert deploy(api.client, attacker, "hostile", hostile.resource_attacks_zip())["build_status"] == "success"
    with LiveServer(api.app) as live:
        yield api.app, live.url, victim, attacker


def post(url: str, headers: dict, model: str, **fields) -> requests.Response:
    # The client's own timeout is only a generous deadline for the test: the service answers first.
    return requests.post(url + "/custom", json={"model": model, **fields}, headers=headers, timeout=120)


def assert_others_served(url: str, victim: dict) -> None:
    assert requests.get(url + "/healthz", timeout=30).status_code == 200
    assert post(url, victim, "steady", numbers=[2, 3]).json()["output"] == {"sum": 5}


def test_a_model_that_stops_reading_gets_504_and_holds_no_thread(service):
    app, url, victim, attacker = service
    assert post(url, attacker, "hostile", attack="answer-then-stop-reading").json()["output"] == {"ok": True}
    worker = worker_of(app, "hostile")
    restarts = worker.restarts

    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(post, url, attacker, "hostile", text=BIG)
        until(lambda: worker.busy, timeout_s=30)  # the write to the worker's full pipe is under way
        assert_others_served(url, victim)  # meanwhile
        answer = stuck.result(timeout=120)

    assert answer.status_code == 504, answer.text
    assert f"did not take its request within {CALL_TIMEOUT_S}s" in answer.json()["message"]
    assert worker.restarts == restarts + 1 and worker.process is None  # killed, with its sandbox
    assert post(url, attacker, "hostile").json()["output"]["ok"] is True  # restarted on the next call
    assert_others_served(url, victim)


@pytest.mark.parametrize("attack,status,words", [
    ("garbage-line", 502, "wrote something that is not its protocol"),
    ("garbage-no-newline", 502, "wrote something that is not its protocol"),
    ("unfinished-answer", 504, f"did not finish its answer within {CALL_TIMEOUT_S}s"),
])
def test_a_model_answering_garbage_fails_that_request_and_is_restarted(service, attack, status, words):
    app, url, victim, attacker = service

    answer = post(url, attacker, "hostile", attack=attack)

    assert answer.status_code == status, answer.text
    assert words in answer.json()["message"] and "restarted" in answer.json()["message"]
    assert worker_of(app, "hostile").process is None
    assert post(url, attacker, "hostile").json()["output"]["ok"] is True
    assert_others_served(url, victim)


# --- on gunicorn, with fewer threads than stuck requests --------------------------------


def _deploy_over_http(url: str, headers: dict, name: str, archive: bytes) -> dict:
    upload = requests.post(url + "/upload-url", json={"model_name": name}, headers=headers, timeout=30).json()
    parts = urlsplit(upload)
    put = requests.put(f"{url}{parts.path}?{parts.query}", data=archive,
                       headers={"content-type": "application/zip"}, timeout=60)
    assert put.status_code == 200, put.text
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        details = requests.get(f"{url}/models/{name}", headers=headers, timeout=30).json()
        if details["build_status"] not in ("building", "awaiting_upload"):
            return details
        time.sleep(0.3)
    raise AssertionError(f"{name} still building")


def test_many_stuck_requests_at_once_do_not_use_up_the_servers_threads(tmp_path, make_app):
    from ..gunicorn import production_server

    threads = 4
    with production_server(tmp_path, INFER_WORKERS="1", INFER_THREADS=str(threads), INFER_BUILD_POLL_S="0.2",
                           INFER_WORKER_CALL_TIMEOUT_S="2", INFER_REQUEST_TIMEOUT_S="30") as server:
        [key] = server.printed_keys()
        attacker = {"x-api-key": key}
        victim = {"x-api-key": new_key(make_app(DATA_DIR=str(tmp_path / "data")), "victim")}
        assert _deploy_over_http(server.url, victim, "steady", inference_zip())["build_status"] == "success"
        assert _deploy_over_http(server.url, attacker, "hostile",
                                 hostile.resource_attacks_zip())["build_status"] == "success"
        assert_others_served(server.url, victim)

        # Each fresh worker reads one of these, answers it, and reads nothing more:
        # the request after it finds a full pipe.
        with ThreadPoolExecutor(2 * threads) as pool:
            stuck = [pool.submit(post, server.url, attacker, "hostile", attack="answer-then-stop-reading", text=BIG)
                     for _ in range(2 * threads)]
            answers = [future.result(timeout=120) for future in stuck]  # every one comes back

        statuses = sorted(answer.status_code for answer in answers)
        assert set(statuses) <= {200, 504}, [answer.text for answer in answers]
        assert any("did not take its request" in answer.text for answer in answers), statuses
        assert_others_served(server.url, victim)  # every thread free again


# --- the worker's client alone, with a fake worker -------------------------------------

# Speaks the protocol. Loading waits for the file named in its first argument (if
# any); {"hang": true} is never answered; {"stop_reading": true} is answered and
# then nothing more is read.
FAKE_WORKER = r'''
import json, os, sys, time
gate = sys.argv[1] if len(sys.argv) > 1 else ""
while gate and not os.path.exists(gate):
    time.sleep(0.01)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)["input"]
    if request.get("hang"):
        time.sleep(3600)
    print(json.dumps({"output": "ok"}), flush=True)
    if request.get("stop_reading"):
        time.sleep(3600)
'''


@pytest.fixture
def launcher():
    launcher = Launcher(FAKE_WORKER)
    yield launcher
    for process in launcher.started:
        if process.poll() is None:
            stop(process)


def test_a_call_waiting_for_the_lock_past_the_call_timeout_gets_504_busy(launcher, tmp_path):
    gate = tmp_path / "loaded"
    launcher.args = [str(gate)]
    client = WorkerProcess("m", launcher, stop, call_timeout_s=1, load_timeout_s=600, max_reply_bytes=1 << 20)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.call, "custom", {})  # holds the lock while its worker loads
        until(lambda: launcher.started, timeout_s=30)

        with pytest.raises(WorkerTimeout) as busy:
            client.call("custom", {})

        gate.touch()
        assert first.result(timeout=60) == "ok"
    assert busy.value.status == 504 and busy.value.headers == {"Retry-After": "1"}
    assert "is busy" in busy.value.message and "INFER_WORKER_CALL_TIMEOUT_S" in busy.value.message
    assert len(launcher.started) == 1  # the waiting call touched nothing


def test_a_callers_deadline_ends_a_call_before_the_call_timeout(launcher):
    client = WorkerProcess("m", launcher, stop, call_timeout_s=600, load_timeout_s=60, max_reply_bytes=1 << 20)
    assert client.call("custom", {}) == "ok"

    with pytest.raises(WorkerTimeout) as late:
        client.call("custom", {"hang": True}, deadline=time.monotonic() + 1)

    assert "INFER_REQUEST_TIMEOUT_S" in late.value.message
    assert launcher.started[0].poll() is not None  # the hung worker was killed
    assert client.call("custom", {}) == "ok" and len(launcher.started) == 2


def test_closing_never_waits_for_a_call_stuck_writing_to_its_worker(launcher):
    client = WorkerProcess("m", launcher, stop, call_timeout_s=600, load_timeout_s=60, max_reply_bytes=1 << 20)
    assert client.call("custom", {"stop_reading": True}) == "ok"
    outcome = {}

    def stuck_call():
        try:
            client.call("custom", {"text": BIG})
        except Exception as exc:  # noqa: BLE001 - the test looks at what it was
            outcome["error"] = exc

    caller = threading.Thread(target=stuck_call)
    caller.start()
    until(lambda: client.busy, timeout_s=30)
    closer = threading.Thread(target=client.close)
    closer.start()
    closer.join(timeout=60)
    caller.join(timeout=60)

    assert not closer.is_alive() and not caller.is_alive()  # neither held for the call's 600 s
    assert isinstance(outcome["error"], ModelUnavailable)
    assert all(process.poll() is not None for process in launcher.started)


def test_a_worker_that_closes_its_output_but_lives_on_is_stopped(launcher):
    launcher.source = FAKE_WORKER.replace('print(json.dumps({"output": "ok"}), flush=True)',
                                          'os.close(1); time.sleep(3600)')
    client = WorkerProcess("m", launcher, stop, call_timeout_s=600, load_timeout_s=60, max_reply_bytes=1 << 20)

    with pytest.raises(Exception) as failed:
        client.call("custom", {})

    assert getattr(failed.value, "status", None) == 502 and "closed its output" in failed.value.message
    assert launcher.started[0].poll() is not None

