"""LangChain and LlamaIndex index a corpus of 1,200 chunks against a live server with
their defaults unchanged (1,000 and 100 texts per request; OpenAI takes 2,048), then
retrieve from it. The frameworks run in .venv-frameworks (scripts/test makes it from
requirements-frameworks.txt), as a user's application would, on the packaged MiniLM."""

import json
import math
import os
import subprocess

import numpy as np
import pytest
import requests

from ..gunicorn import ROOT, production_server

FRAMEWORKS_PYTHON = os.path.join(ROOT, ".venv-frameworks", "bin", "python")
CLIENT = os.path.join(os.path.dirname(__file__), "index_corpus.py")
ANIMALS = ["cat", "dog", "heron", "otter", "lynx", "badger", "gecko", "walrus", "ibis", "marmot"]
PLACES = ["desert", "harbour", "glacier", "orchard", "swamp", "canyon", "meadow"]
CHUNKS = [f"Note {i}: the {ANIMALS[i % 10]} near the {PLACES[i % 7]} was counted on day {i // 70}." for i in range(1200)]
QUERY_INDEX = 777
# Texts per request with each framework's defaults.
DEFAULT_BATCH = {"langchain": 1000, "llamaindex": 100}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with production_server(tmp_path_factory.mktemp("frameworks"), INFER_WORKERS="1", INFER_THREADS="4") as live:
        key = live.printed_keys()[0]
        # Loaded before the frameworks' clocks start (the seconds printed are indexing only).
        assert requests.post(live.url + "/text-vectorisation", json={"text": "warm up", "model": "english"},
                             headers={"x-api-key": key}, timeout=300).status_code == 200
        yield live, key


def embedding_requests(server, key) -> int:
    usage = requests.get(server.url + "/usage", headers={"x-api-key": key}, timeout=30).json()
    return sum(row["requests"] for row in usage["totals"] if row["task"] == "text-vectorisation")


@pytest.mark.packaged_model
@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
def test_a_framework_indexes_1200_chunks_with_its_defaults_and_retrieves(server, tmp_path, framework):
    live, key = server
    assert os.path.exists(FRAMEWORKS_PYTHON), "scripts/test makes .venv-frameworks (requirements-frameworks.txt)"
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps(CHUNKS))
    before = embedding_requests(live, key)

    run = subprocess.run([FRAMEWORKS_PYTHON, CLIENT, framework, live.url, key, str(corpus), str(QUERY_INDEX)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert result["chunks"] == 1200 and result["dimensions"] == 384
    assert result["found"][0] == CHUNKS[QUERY_INDEX]  # the query is that chunk's own text
    # Indexing took ceil(1200 / the framework's default) requests, then the query and one more vector.
    sent = embedding_requests(live, key) - before
    assert sent == math.ceil(1200 / DEFAULT_BATCH[framework]) + 2, sent
    # The framework's vector is the service's own.
    own = requests.post(live.url + "/text-vectorisation", json={"text": CHUNKS[0], "model": "english"},
                        headers={"x-api-key": key}, timeout=60).json()["vector"]
    np.testing.assert_allclose(result["first_vector"], own, rtol=1e-4, atol=1e-5)
    print(f"{framework}: 1200 chunks in {sent - 2} requests, {result['seconds']} s")
