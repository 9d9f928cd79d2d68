"""A retriever with a reranker against a live server: the vector store's 20 nearest
chunks (the packaged MiniLM, /v1/embeddings) reranked through /v1/rerank by
LangChain-community's JinaRerank or LlamaIndex's JinaRerank postprocessor (a tiny
random-weight cross-encoder standing in for ms-marco-MiniLM-L6-v2). The framework runs
in .venv-frameworks, as a user's application would; its top 3 are the service's own
/rerank top 3 of those candidates."""

import json
import os
import subprocess

import pytest
import requests

from ..gunicorn import production_server
from ..tiny_models import build_tiny_cross_encoder
from .test_retrieval_frameworks import CHUNKS, FRAMEWORKS_PYTHON

CLIENT = os.path.join(os.path.dirname(__file__), "rerank_candidates.py")
CORPUS = CHUNKS[:200]
QUERY = "Which otter was counted near the harbour?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("rerank-models")
    build_tiny_cross_encoder(str(model_dir / "ms-marco-MiniLM-L6-v2"))
    with production_server(tmp_path_factory.mktemp("rerank-framework"), INFER_WORKERS="1", INFER_THREADS="4",
                           INFER_MODEL_DIR=str(model_dir), INFER_BACKEND="torch") as live:
        yield live, live.printed_keys()[0]


def rerank_requests(live, key) -> int:
    usage = requests.get(live.url + "/usage", headers={"x-api-key": key}, timeout=30).json()
    return sum(row["requests"] for row in usage["totals"] if row["task"] == "rerank")


@pytest.mark.packaged_model
@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
def test_a_frameworks_retriever_reranks_its_candidates_through_v1_rerank(server, tmp_path, framework):
    live, key = server
    assert os.path.exists(FRAMEWORKS_PYTHON), "scripts/test makes .venv-frameworks (requirements-frameworks.txt)"
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps(CORPUS))

    before = rerank_requests(live, key)

    run = subprocess.run([FRAMEWORKS_PYTHON, CLIENT, framework, live.url, key, str(corpus), QUERY, "20", "3"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])

    assert len(result["candidates"]) == 20 and len(result["reranked"]) == 3
    own = requests.post(live.url + "/rerank", json={"query": QUERY, "texts": result["candidates"], "top_n": 3,
                                                    "return_text": True},
                        headers={"x-api-key": key}, timeout=60).json()
    assert [document["text"] for document in result["reranked"]] == [hit["text"] for hit in own]
    assert [document["relevance_score"] for document in result["reranked"]] == pytest.approx(
        [hit["score"] for hit in own], abs=1e-6)
    assert rerank_requests(live, key) - before == 2  # the framework's one /v1/rerank call, and ours
