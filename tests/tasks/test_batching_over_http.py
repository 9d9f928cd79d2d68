"""Batching seen from HTTP: concurrent requests share forward passes; a full queue is 429."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from ..conftest import LiveServer, metric_value, until
from ..tiny_models import packaged_minilm_dir

BATCHES = 'infer_batch_size_count{model="all-MiniLM-L6-v2",task="text-vectorisation"}'
ITEMS = 'infer_batch_size_sum{model="all-MiniLM-L6-v2",task="text-vectorisation"}'
PASS_SECONDS = 'infer_batch_seconds_sum{model="all-MiniLM-L6-v2",task="text-vectorisation"}'
TIMED_PASSES = 'infer_batch_seconds_count{model="all-MiniLM-L6-v2",task="text-vectorisation"}'


@pytest.mark.packaged_model
def test_concurrent_requests_share_forward_passes_and_get_their_own_vectors(app, api_key):
    from sentence_transformers import SentenceTransformer

    sentences = [f"sentence number {i} about topic {i * 7 % 13}" for i in range(64)]
    expected = SentenceTransformer(packaged_minilm_dir(), device="cpu").encode(sentences)

    with LiveServer(app) as server:
        session_headers = {"x-api-key": api_key}
        requests.post(server.url + "/text-vectorisation", json={"text": "warm up"}, headers=session_headers, timeout=60)
        before = requests.get(server.url + "/metrics", timeout=10).text

        def call(i):
            response = requests.post(
                server.url + "/text-vectorisation", json={"text": sentences[i]}, headers=session_headers, timeout=60
            )
            return response.status_code, response.json()["vector"]

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(call, range(64)))
        after = requests.get(server.url + "/metrics", timeout=10).text

    for (status, vector), want in zip(results, expected):
        assert status == 200
        cosine = np.dot(vector, want) / (np.linalg.norm(vector) * np.linalg.norm(want))
        assert cosine >= 0.9999  # each caller got the vector of its own sentence
    forward_passes = metric_value(after, BATCHES) - metric_value(before, BATCHES)
    items = metric_value(after, ITEMS) - metric_value(before, ITEMS)
    assert items == 64
    assert forward_passes < 64  # some batches held more than one request
    # Every pass is timed too.
    assert metric_value(after, TIMED_PASSES) - metric_value(before, TIMED_PASSES) == forward_passes
    assert metric_value(after, PASS_SECONDS) > metric_value(before, PASS_SECONDS)


def test_a_full_queue_answers_429_with_retry_after(client_for, tiny_sentence_model_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_sentence_model_dir, tmp_path / "models" / "multilingual")
    api = client_for(MODEL_DIR=str(tmp_path / "models"), BATCH_MAX_QUEUE=1)
    app, client, headers = api.app, api.client, api.headers
    body = {"text": "x", "model": "multilingual"}
    assert client.post("/text-vectorisation", json=body, headers=headers).status_code == 200

    served = app.extensions["models"].get("text-vectorisation", "multilingual")
    started, gate = threading.Event(), threading.Event()
    real_runner = served.runners["text-vectorisation"]
    batcher = served._batchers["text-vectorisation"]
    batcher._run = lambda items: (started.set(), gate.wait(10), real_runner(items))[2]

    with LiveServer(app) as server, ThreadPoolExecutor(2) as pool:
        post = lambda: requests.post(server.url + "/text-vectorisation", json=body, headers=headers, timeout=30)
        running = pool.submit(post)
        assert started.wait(10)  # its pass runs, held at the gate
        queued = pool.submit(post)
        until(lambda: batcher.queued() == 1)  # it fills the queue of one
        refused = post()
        gate.set()
        assert running.result().status_code == 200
        assert queued.result().status_code == 200

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert "INFER_BATCH_MAX_QUEUE" in refused.json()["message"]
