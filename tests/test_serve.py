"""The production server as the README starts it: gunicorn.conf.py + wsgi:app."""

import json
import os
import re
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from .gunicorn import production_server, start_production_server


@pytest.fixture
def gunicorn_server(tmp_path):
    with production_server(tmp_path) as server:
        yield server


@pytest.mark.packaged_model
def test_gunicorn_prints_one_key_serves_and_sums_metrics_over_workers(gunicorn_server):
    url = gunicorn_server.url
    keys = gunicorn_server.printed_keys()
    assert len(keys) == 1  # printed once, by the master, not once per worker

    for _ in range(6):
        response = requests.post(url + "/text-vectorisation", json={"text": "hello"}, headers={"x-api-key": keys[0]},
                                 timeout=60)
        assert response.status_code == 200 and len(response.json()["vector"]) == 384
    metrics = requests.get(url + "/metrics", timeout=10).text
    served = re.search(r'infer_requests_total\{endpoint="/text-vectorisation",method="POST",status="200"\} (\S+)', metrics)
    assert float(served.group(1)) == 6.0  # one sum over both workers' samples


def wait_for_line(server, text: str, timeout: float = 300) -> str:
    """The server's log once it holds `text` (no request sent meanwhile)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        log = server.log()
        if text in log:
            return log
        if server.process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {log}")
        time.sleep(0.3)
    raise AssertionError(f"no {text!r} in: {server.log()}")


@contextmanager
def only_this_worker_running(pid: int, workers: list[int]):
    """The other workers stopped (SIGSTOP), so that only `pid` can accept a connection."""
    others = [other for other in workers if other != pid]
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


@pytest.mark.packaged_model
def test_a_preloaded_start_exports_once_and_each_worker_answers_only_once_loaded(tmp_path):
    exports = tmp_path / "onnx"  # a cache of its own: this start must build the export
    server = start_production_server(tmp_path, INFER_PRELOAD_MODELS="text-vectorisation:english", INFER_WORKERS="2",
                                     INFER_ONNX_CACHE_DIR=str(exports), HF_HUB_OFFLINE="1")
    try:
        log = wait_for_line(server, "\nready: ")

        # The export was built once (one worker built it, the other waited on its lock
        # and loaded what it built), then each worker loaded its own copy.
        assert log.count("building all-MiniLM-L6-v2-vectors") == 1
        assert log.count("loaded model all-MiniLM-L6-v2 on cpu") == 2
        assert log.index("built all-MiniLM-L6-v2-vectors") < log.index("loaded model all-MiniLM-L6-v2 on cpu")
        manifests = list(Path(exports).glob("all-MiniLM-L6-v2-vectors-*/manifest.json"))
        assert len(manifests) == 1 and json.loads(manifests[0].read_text())["servable"] is True
        # Each worker loaded the model (from that export) before it accepted a request,
        # and the ready line came after both.
        workers = [int(pid) for pid in re.findall(
            r"worker (\d+) accepts requests \(models loaded: english \(all-MiniLM-L6-v2 on onnx\)\)", log)]
        assert len(set(workers)) == 2
        ready_line = re.search(r"^ready: (\S+) \(2 workers; models loaded: english \(all-MiniLM-L6-v2 on onnx\)\)$",
                               log, re.MULTILINE)
        assert ready_line and ready_line.group(1) == server.url
        assert f"the dashboard at {server.url}/ui/" in log
        readyz = requests.get(server.url + "/readyz", timeout=10)
        assert readyz.status_code == 200 and readyz.json()["checks"]["loaded_models"] == ["all-MiniLM-L6-v2"]

        key = server.printed_keys()[0]
        for pid in workers:
            with only_this_worker_running(pid, workers):
                response = requests.post(server.url + "/text-vectorisation", json={"text": "hello"},
                                         headers={"x-api-key": key}, timeout=60)
            assert response.status_code == 200 and len(response.json()["vector"]) == 384
        # No request loaded or exported anything: the workers had it all before the first one.
        after_ready = server.log()[len(log):]
        assert "loading model" not in after_ready and "building" not in after_ready
    finally:
        server.stop()
