"""POST /text-vectorisation end to end, on the real packaged all-MiniLM-L6-v2 and tiny models."""

import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from web.settings import settings_of

from ..conftest import LiveServer, metric_value
from ..tiny_models import packaged_minilm_dir

SENTENCES = ["iPhone 12 128GB", "RTX 3090", "The meaning of life is 42.", "Ein mehrsprachiger Satz."]


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def reference_minilm():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(packaged_minilm_dir(), device="cpu")


@pytest.mark.packaged_model
def test_single_text_equals_sentence_transformers(client, headers, reference_minilm):
    response = client.post("/text-vectorisation", json={"text": SENTENCES[0], "model": "english"}, headers=headers)

    assert response.status_code == 200
    vector = response.json["vector"]
    expected = reference_minilm.encode(SENTENCES[0])
    assert len(vector) == 384
    assert cosine(vector, expected) >= 0.9999


@pytest.mark.packaged_model
def test_batch_equals_sentence_transformers_and_keeps_order(client, headers, reference_minilm):
    response = client.post("/text-vectorisation", json={"text": SENTENCES}, headers=headers)

    assert response.status_code == 200
    vectors = response.json["vector"]
    expected = reference_minilm.encode(SENTENCES)
    assert len(vectors) == len(SENTENCES)
    for got, want in zip(vectors, expected):
        assert cosine(got, want) >= 0.9999
    assert cosine(vectors[0], vectors[1]) < 0.99  # different sentences, different vectors


@pytest.mark.packaged_model
def test_english_is_the_default_model(client, headers):
    named = client.post("/text-vectorisation", json={"text": "hello", "model": "english"}, headers=headers)
    default = client.post("/text-vectorisation", json={"text": "hello"}, headers=headers)
    assert default.json["vector"] == named.json["vector"]


def test_multilingual_served_from_the_local_model_dir(client_for, tiny_sentence_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer

    model_dir = tmp_path / "models"
    shutil.copytree(tiny_sentence_model_dir, model_dir / "multilingual")
    api = client_for(MODEL_DIR=str(model_dir))
    response = api.client.post(
        "/text-vectorisation", json={"text": SENTENCES, "model": "multilingual"}, headers=api.headers
    )

    assert response.status_code == 200
    expected = SentenceTransformer(tiny_sentence_model_dir, device="cpu").encode(SENTENCES)
    assert np.asarray(response.json["vector"]).shape == (4, 32)
    for got, want in zip(response.json["vector"], expected):
        assert cosine(got, want) >= 0.9999


def test_model_that_cannot_be_had_is_503_naming_it_and_how_to_provide_it(client, headers):
    response = client.post("/text-vectorisation", json={"text": "hi", "model": "multilingual"}, headers=headers)

    assert response.status_code == 503
    message = response.json["message"]
    assert "paraphrase-multilingual-MiniLM-L12-v2" in message
    # The ways to provide it: its folder in the model dir, or the Hugging Face cache.
    model_dir = settings_of(client.application).model_dir
    assert f"put its files in {os.path.join(model_dir, 'paraphrase-multilingual-MiniLM-L12-v2')}" in message
    # huggingface_hub's CLI is `hf` now (`huggingface-cli` is gone from it), with the pinned revision.
    assert ("hf download sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2 "
            "--revision bf3bf13ab40c3157080a7ab344c831b9ad18b5eb") in message
    assert "huggingface-cli" not in message


@pytest.mark.packaged_model
def test_eight_concurrent_first_requests_load_the_model_once(app, api_key):
    loads = 'infer_model_loads_total{model="all-MiniLM-L6-v2"}'
    with LiveServer(app) as server, ThreadPoolExecutor(8) as pool:
        loads_before = metric_value(requests.get(server.url + "/metrics", timeout=10).text, loads)

        def call(i):
            return requests.post(
                server.url + "/text-vectorisation",
                json={"text": f"sentence number {i}"},
                headers={"x-api-key": api_key},
                timeout=120,
            )

        responses = list(pool.map(call, range(8)))
        metrics = requests.get(server.url + "/metrics", timeout=10).text

    assert [r.status_code for r in responses] == [200] * 8
    # Prometheus counters are per process, so count this app's loads as a difference.
    assert metric_value(metrics, loads) - loads_before == 1


@pytest.mark.packaged_model
def test_small_budget_unloads_the_least_recently_used_model(client_for, tiny_sentence_model_dir, tmp_path):
    model_dir = tmp_path / "models"
    shutil.copytree(tiny_sentence_model_dir, model_dir / "multilingual")
    # MiniLM takes ~87 MiB, the tiny model ~4 MiB: a 60 MiB budget holds only one.
    api = client_for(MODEL_DIR=str(model_dir), MODEL_MEMORY_BUDGET_MB=60)
    app, client, headers = api.app, api.client, api.headers
    registry = app.extensions["models"]
    evictions = 'infer_model_evictions_total{model="all-MiniLM-L6-v2"}'
    evictions_before = metric_value(client.get("/metrics").data.decode(), evictions)

    assert client.post("/text-vectorisation", json={"text": "a"}, headers=headers).status_code == 200
    assert registry.cache.loaded() == ["all-MiniLM-L6-v2"]
    assert client.post("/text-vectorisation", json={"text": "a", "model": "multilingual"}, headers=headers).status_code == 200
    assert registry.cache.loaded() == ["paraphrase-multilingual-MiniLM-L12-v2"]

    metrics = client.get("/metrics").data.decode()
    assert metric_value(metrics, evictions) - evictions_before == 1
    assert 'infer_models_loaded{model="all-MiniLM-L6-v2"} 0.0' in metrics


@pytest.mark.packaged_model
def test_a_catalogue_key_names_its_model_on_the_task_that_model_serves(client, headers):
    """GET /v1/models lists catalogue keys; Backprop's 0.1.x client sends such names too."""
    by_key = client.post("/text-vectorisation", json={"text": "hello", "model": "all-MiniLM-L6-v2"}, headers=headers)
    by_name = client.post("/text-vectorisation", json={"text": "hello", "model": "english"}, headers=headers)
    assert by_key.status_code == 200
    assert by_key.json == by_name.json

    wrong_task = client.post("/text-vectorisation", json={"text": "hello", "model": "bart-large-mnli"}, headers=headers)
    assert wrong_task.status_code == 404  # a catalogue key of a model that does not vectorise text
