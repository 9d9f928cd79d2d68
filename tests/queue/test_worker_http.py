"""A queue worker's own /healthz and /metrics (INFER_WORKER_HEALTH_PORT), and the web
server's queue depth read from Redis (the RQ lists KEDA reads too)."""

import socket
import subprocess
import sys

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ..conftest import ApiClient
from ..predictions.test_async_predictions import GENERATION, submit, wait_for
from ..servers import free_port
from .workers import ROOT, environment, start_workers, stop_workers


def parse(text: str) -> dict:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture
def queued_api(redis_url, make_app, tiny_model_dir, tmp_path):
    config = {"QUEUE_URL": redis_url, "DATABASE_URL": f"sqlite:///{tmp_path}/shared.db",
              "DATA_DIR": str(tmp_path / "data"), "MODEL_DIR": tiny_model_dir, "QUEUE_SWEEP_S": 0.5,
              "TORCH_THREADS": 1, "WORK_METRICS_MAX_AGE_S": 0}
    return ApiClient(make_app(**config)), config


def test_a_worker_serves_healthz_and_metrics_on_its_own_port(queued_api, redis_url, tmp_path):
    api, config = queued_api
    ids = [submit(api, "/text-generation", GENERATION)["id"] for _ in range(2)]
    web = parse(api.client.get("/metrics").data.decode())
    assert web[("infer_queue_depth", (("queue", "predictions"),))] == 2  # LLEN rq:queue:predictions
    assert web[("infer_work_waiting", (("kind", "predict"),))] == 2

    port = free_port()
    workers = start_workers({**config, "WORKER_HEALTH_PORT": port}, str(tmp_path), 1, redis_url)
    try:
        url = f"http://127.0.0.1:{port}"
        health = requests.get(url + "/healthz", timeout=10)
        assert [wait_for(api, prediction_id)["status"] for prediction_id in ids] == ["succeeded"] * 2
        metrics = parse(requests.get(url + "/metrics", timeout=10).text)
        missing = requests.get(url + "/keys", timeout=10)
    finally:
        stop_workers(workers)

    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["worker"] == workers[0].name
    assert metrics[("infer_work_seconds_count", (("kind", "predict"), ("status", "succeeded")))] == 2
    assert metrics[("infer_prediction_lag_seconds_count", (("status", "succeeded"),))] == 2
    assert metrics[("infer_queue_depth", (("queue", "predictions"),))] == 0
    assert metrics[("infer_work_waiting", (("kind", "predict"),))] == 0
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_url"


def test_a_worker_whose_health_port_is_taken_says_so(queued_api, tmp_path):
    _api, config = queued_api
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    try:
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "worker"], cwd=ROOT,
                                env=environment({**config, "WORKER_HEALTH_PORT": taken.getsockname()[1]}),
                                capture_output=True, text=True, timeout=120)
    finally:
        taken.close()

    assert result.returncode != 0
    assert "INFER_WORKER_HEALTH_PORT" in result.stderr
