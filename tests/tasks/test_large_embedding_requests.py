"""Corpus-sized vectorising requests, as retrieval frameworks send them (LangChain
1,000 texts, LlamaIndex 100, OpenAI's limit 2,048): taken whole, bounded by their
characters and body size, answered in order, and counted against a requests-per-minute
limit as the batches of INFER_MAX_BATCH_SIZE they replace."""

import numpy as np

TEXTS = [f"chunk number {i} of a corpus about {'cats' if i % 2 else 'dogs'}" for i in range(2048)]


def test_2048_texts_in_one_request_equal_the_same_texts_sent_in_small_requests(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir)
    large = api.client.post("/text-vectorisation", json={"text": TEXTS}, headers=api.headers)
    assert large.status_code == 200, large.json
    vectors = large.json["vector"]
    assert len(vectors) == 2048
    for start in (0, 1000, 2040):
        small = api.client.post("/text-vectorisation", json={"text": TEXTS[start:start + 8]}, headers=api.headers)
        np.testing.assert_allclose(vectors[start:start + 8], small.json["vector"], rtol=1e-4, atol=1e-5)

    openai = api.client.post("/v1/embeddings", json={"input": TEXTS, "model": "english"}, headers=api.headers)
    assert openai.status_code == 200, openai.json
    assert [row["index"] for row in openai.json["data"]] == list(range(2048))
    np.testing.assert_allclose([row["embedding"] for row in openai.json["data"]], vectors, rtol=1e-4, atol=1e-5)


def test_more_texts_or_characters_than_the_settings_allow_are_refused_naming_the_setting(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, MAX_EMBEDDING_CHARS=1000)
    too_many = api.client.post("/text-vectorisation", json={"text": ["a"] * 2049}, headers=api.headers)
    assert too_many.status_code == 422 and "INFER_MAX_EMBEDDING_INPUTS" in too_many.json["message"]
    too_long = api.client.post("/v1/embeddings", json={"input": ["x" * 100] * 11, "model": "english"},
                               headers=api.headers)
    assert too_long.status_code == 400 and "INFER_MAX_EMBEDDING_CHARS" in too_long.json["error"]["message"]
    assert "1100 characters" in too_long.json["error"]["message"]
    # The other batch routes keep INFER_MAX_BATCH_SIZE.
    other = api.client.post("/text-classification", json={"text": ["a"] * 65, "labels": ["x", "y"]},
                            headers=api.headers)
    assert other.status_code == 422 and "INFER_MAX_BATCH_SIZE" in other.json["message"]


def test_vectorising_routes_take_bodies_up_to_their_own_limit(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, MAX_CONTENT_LENGTH=10_000, MAX_EMBEDDING_BODY_BYTES=60_000)
    texts = ["word " * 200] * 40  # ~40 KB: over the default body limit, under the vectorising routes'
    assert api.client.post("/text-vectorisation", json={"text": texts}, headers=api.headers).status_code == 200
    assert api.client.post("/v1/embeddings", json={"input": texts, "model": "english"},
                           headers=api.headers).status_code == 200
    elsewhere = api.client.post("/text-classification", json={"text": texts[:20], "labels": ["a", "b"]},
                                headers=api.headers)
    assert elsewhere.status_code == 413 and "INFER_MAX_CONTENT_LENGTH" in elsewhere.json["message"]
    over = api.client.post("/text-vectorisation", json={"text": texts * 2}, headers=api.headers)
    assert over.status_code == 413 and "INFER_MAX_EMBEDDING_BODY_BYTES" in over.json["message"]


def test_a_requests_limit_counts_one_request_per_max_batch_size_texts(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, ACCOUNT_REQUESTS_PER_MIN=5, MAX_BATCH_SIZE=64)
    answer = api.client.post("/text-vectorisation", json={"text": TEXTS[:200]}, headers=api.headers)
    assert answer.status_code == 200
    assert answer.headers["x-ratelimit-remaining-requests"] == "1"  # 200 texts: 4 requests of 64
    never = api.client.post("/v1/embeddings", json={"input": TEXTS[:400], "model": "english"}, headers=api.headers)
    assert never.status_code == 429 and "can never pass" in never.json["error"]["message"]
    assert "Retry-After" not in never.headers
    one = api.client.post("/text-vectorisation", json={"text": "one text"}, headers=api.headers)
    assert one.status_code == 200 and one.headers["x-ratelimit-remaining-requests"] == "0"
