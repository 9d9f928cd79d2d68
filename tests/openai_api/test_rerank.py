"""POST /v1/rerank in Cohere's and Jina's shape: the same scores as /rerank and as the
library's CrossEncoder, documents as strings or {"text"}, usage from the pairs' tokens,
errors in OpenAI's shape; GET /v1/models lists rerank models with the route."""

import pytest

from ..tasks.test_rerank import DOCUMENTS, QUERY, library_scores
from .conftest import assert_openai_error


@pytest.fixture
def api(client_for, tiny_model_dir):
    return client_for(MODEL_DIR=tiny_model_dir, BACKEND="torch", MAX_RERANK_DOCUMENTS=8, MAX_TEXT_LENGTH=200)


def post(api, body, headers=None):
    return api.client.post("/v1/rerank", json=body, headers=headers or api.headers)


def test_results_in_cohere_shape_equal_cross_encoder_and_slash_rerank(api, tiny_dir):
    documents = [{"text": text} if index % 2 else text for index, text in enumerate(DOCUMENTS)]
    response = post(api, {"model": "ms-marco-MiniLM-L6-v2", "query": QUERY, "documents": documents,
                          "top_n": 3, "return_documents": True})

    assert response.status_code == 200, response.json
    body = response.json
    assert set(body) == {"id", "model", "results", "usage"} and body["model"] == "ms-marco-MiniLM-L6-v2"
    assert body["id"] == response.headers["X-Request-Id"]
    expected = library_scores(tiny_dir["cross_encoder"])
    best = sorted(range(len(DOCUMENTS)), key=lambda index: -expected[index])[:3]
    assert [result["index"] for result in body["results"]] == best
    assert [result["relevance_score"] for result in body["results"]] == pytest.approx(
        [expected[i] for i in best], abs=1e-5)
    assert [result["document"] for result in body["results"]] == [{"text": DOCUMENTS[i]} for i in best]
    native = api.client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS, "top_n": 3},
                             headers=api.headers).json
    assert [(hit["index"], hit["score"]) for hit in native] == [
        (result["index"], result["relevance_score"]) for result in body["results"]]


def test_usage_counts_the_tokens_of_every_pair_and_documents_are_left_out_unless_asked(api, tiny_dir):
    from transformers import AutoTokenizer

    response = post(api, {"model": "english", "query": QUERY, "documents": DOCUMENTS})

    assert response.status_code == 200, response.json
    assert all(set(result) == {"index", "relevance_score"} for result in response.json["results"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir["cross_encoder"])
    pairs = tokenizer([QUERY] * len(DOCUMENTS), DOCUMENTS)
    assert response.json["usage"] == {"total_tokens": sum(len(ids) for ids in pairs["input_ids"])}


def test_v1_models_lists_the_reranker_with_its_route(api):
    listed = api.client.get("/v1/models", headers=api.headers).json["data"]

    entry = next(model for model in listed if model["id"] == "ms-marco-MiniLM-L6-v2")
    assert entry["tasks"] == ["rerank"] and entry["endpoints"] == ["/v1/rerank"]


@pytest.mark.parametrize("body, param, words", [
    ({"model": "english", "documents": DOCUMENTS}, "query", "Missing data"),
    ({"model": "english", "query": "", "documents": DOCUMENTS}, "query", "empty"),
    ({"model": "english", "query": "q" * 201, "documents": DOCUMENTS}, "query", "INFER_MAX_TEXT_LENGTH"),
    ({"model": "english", "query": QUERY, "documents": ["d" * 201]}, "documents", "INFER_MAX_TEXT_LENGTH"),
    ({"query": QUERY, "documents": DOCUMENTS}, "model", "Missing data"),
    ({"model": "english", "query": QUERY, "documents": [{"title": "x"}]}, "documents", "documents[0]"),
    ({"model": "english", "query": QUERY, "documents": []}, "documents", "non-empty list"),
    ({"model": "english", "query": QUERY, "documents": ["x"] * 9}, "documents", "INFER_MAX_RERANK_DOCUMENTS"),
    ({"model": "english", "query": QUERY, "documents": DOCUMENTS, "top_n": 0}, "top_n", "greater than"),
])
def test_bad_bodies_are_400s_in_openai_shape_naming_the_field(api, body, param, words):
    message = assert_openai_error(post(api, body), 400, "invalid_request_error", param=param)

    assert words in message


def test_an_unknown_or_another_accounts_model_is_model_not_found(api):
    body = {"model": "my-reranker", "query": QUERY, "documents": DOCUMENTS}

    assert_openai_error(post(api, body), 404, "invalid_request_error", param="model", code="model_not_found")
    assert_openai_error(post(api, body, api.headers_for("bob")), 404, "invalid_request_error", param="model",
                        code="model_not_found")
