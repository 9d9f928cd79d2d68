"""The production server as the README starts it: gunicorn.conf.py + wsgi:app."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def gunicorn_server(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path / "server.log", "w+")
    env = {**os.environ, "INFER_DATA_DIR": str(tmp_path / "data"), "INFER_BIND": f"127.0.0.1:{port}",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or a worker still booting
            time.sleep(0.3)
    else:
        process.kill()
        raise AssertionError(open(log.name).read())
    yield url, log, process
    process.send_signal(signal.SIGTERM)
    process.wait(30)


@pytest.mark.packaged_model
def test_gunicorn_prints_one_key_serves_and_sums_metrics_over_workers(gunicorn_server):
    url, log, process = gunicorn_server
    log.flush()
    keys = re.findall(r"ik_[A-Za-z0-9_-]+", open(log.name).read())
    assert len(keys) == 1  # printed once, by the master, not once per worker

    for _ in range(6):
        response = requests.post(url + "/text-vectorisation", json={"text": "hello"}, headers={"x-api-key": keys[0]},
                                 timeout=60)
        assert response.status_code == 200 and len(response.json()["vector"]) == 384
    metrics = requests.get(url + "/metrics", timeout=10).text
    served = re.search(r'infer_requests_total\{endpoint="/text-vectorisation",method="POST",status="200"\} (\S+)', metrics)
    assert float(served.group(1)) == 6.0  # one sum over both workers' samples
