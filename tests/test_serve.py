"""The production server as the README starts it: gunicorn.conf.py + wsgi:app."""

import re

import pytest
import requests

from .gunicorn import production_server


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
