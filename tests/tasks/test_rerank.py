"""POST /rerank: the scores equal sentence-transformers' own CrossEncoder on the same pairs
(its sigmoid, or the raw logits), on torch and on ONNX Runtime; the answer is
text-embeddings-inference's list, most relevant first, cut by top_n, with the texts
when asked; bad input is a 422 that says what to fix; another account's model is a 404."""

import json

import pytest

QUERY = "How do cats spend their day?"
DOCUMENTS = [
    "Cats sleep for most of the day and hunt at dusk.",
    "The stock market fell sharply on Tuesday.",
    "A kitten plays with a ball of wool.",
    "Rain is expected over the weekend.",
    "Domestic cats groom themselves for hours.",
]


def library_scores(model_dir, documents=DOCUMENTS, raw=False) -> list[float]:
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(model_dir, device="cpu", local_files_only=True)
    activation = torch.nn.Identity() if raw else None
    return [float(score) for score in model.predict([(QUERY, document) for document in documents],
                                                    activation_fn=activation)]


@pytest.fixture
def rerank(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, BACKEND="torch")

    def post(body, headers=None):
        return api.client.post("/rerank", json=body, headers=headers or api.headers)

    post.api = api
    return post


def test_scores_equal_cross_encoder_predict_most_relevant_first(rerank, tiny_dir):
    response = rerank({"query": QUERY, "texts": DOCUMENTS})

    assert response.status_code == 200, response.json
    expected = library_scores(tiny_dir["cross_encoder"])
    order = sorted(range(len(DOCUMENTS)), key=lambda index: -expected[index])
    assert [hit["index"] for hit in response.json] == order
    assert [hit["score"] for hit in response.json] == pytest.approx([expected[i] for i in order], abs=1e-5)
    assert all(set(hit) == {"index", "score"} for hit in response.json)
    assert len(set(round(score, 3) for score in expected)) == len(DOCUMENTS)  # the order means something


def test_raw_scores_are_the_logits_and_top_n_cuts_with_the_texts(rerank, tiny_dir):
    response = rerank({"query": QUERY, "documents": DOCUMENTS, "top_n": 2, "raw_scores": True,
                       "return_documents": True, "model": "english"})

    assert response.status_code == 200, response.json
    logits = library_scores(tiny_dir["cross_encoder"], raw=True)
    best = sorted(range(len(DOCUMENTS)), key=lambda index: -logits[index])[:2]
    assert [hit["index"] for hit in response.json] == best
    assert [hit["score"] for hit in response.json] == pytest.approx([logits[i] for i in best], abs=1e-5)
    assert [hit["text"] for hit in response.json] == [DOCUMENTS[i] for i in best]
    with_text = rerank({"query": QUERY, "texts": DOCUMENTS, "return_text": True}).json
    assert {hit["text"] for hit in with_text} == set(DOCUMENTS)


def test_more_documents_than_a_batch_run_in_parts_with_the_same_scores(client_for, tiny_model_dir, tiny_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, BACKEND="torch", MAX_BATCH_SIZE=4)
    documents = [f"{DOCUMENTS[i % len(DOCUMENTS)]} ({i})" for i in range(23)]

    response = api.client.post("/rerank", json={"query": QUERY, "texts": documents}, headers=api.headers)

    assert response.status_code == 200, response.json
    expected = library_scores(tiny_dir["cross_encoder"], documents)
    assert len(response.json) == len(documents)
    assert {hit["index"]: hit["score"] for hit in response.json} == pytest.approx(dict(enumerate(expected)), abs=1e-5)


def test_on_onnx_runtime_the_scores_equal_cross_encoder_predict(client_for, tiny_model_dir, tiny_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, BACKEND="onnx")

    response = api.client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS}, headers=api.headers)

    assert response.status_code == 200, response.json
    expected = library_scores(tiny_dir["cross_encoder"])
    assert {hit["index"]: hit["score"] for hit in response.json} == pytest.approx(dict(enumerate(expected)), abs=1e-4)
    assert api.app.extensions["models"].get("rerank", "english").backend == "onnx"


@pytest.mark.parametrize("body, field, words", [
    ({"texts": DOCUMENTS}, "query", "Missing data"),
    ({"query": "", "texts": DOCUMENTS}, "query", "empty"),
    ({"query": QUERY}, "texts", "one of the two"),
    ({"query": QUERY, "texts": DOCUMENTS, "documents": DOCUMENTS}, "texts", "one of the two"),
    ({"query": QUERY, "texts": []}, "texts", "non-empty list"),
    ({"query": QUERY, "texts": ["a", 3]}, "texts", "Not a valid string"),
    ({"query": QUERY, "texts": ["x"] * 6}, "texts", "INFER_MAX_RERANK_DOCUMENTS"),
    ({"query": QUERY, "texts": ["x" * 101]}, "texts", "INFER_MAX_TEXT_LENGTH"),
    ({"query": QUERY, "texts": DOCUMENTS, "top_n": 0}, "top_n", "greater than or equal to 1"),
    ({"query": QUERY, "texts": DOCUMENTS, "truncate": False}, "truncate", "always cut"),
    ({"query": QUERY, "texts": DOCUMENTS, "top_k": 2}, "top_k", "Unknown field"),
])
def test_bad_input_is_a_422_naming_the_field(client_for, tiny_model_dir, body, field, words):
    api = client_for(MODEL_DIR=tiny_model_dir, MAX_RERANK_DOCUMENTS=5, MAX_TEXT_LENGTH=100)

    response = api.client.post("/rerank", json=body, headers=api.headers)

    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json
    assert words in str(response.json["errors"][field]), response.json


def test_an_unknown_or_another_accounts_model_is_a_404(rerank):
    mine = rerank({"query": QUERY, "texts": DOCUMENTS, "model": "no-such-reranker"})
    other = rerank({"query": QUERY, "texts": DOCUMENTS, "model": "no-such-reranker"},
                   headers=rerank.api.headers_for("bob"))

    assert mine.status_code == 404 and other.status_code == 404


def test_an_uploaded_cross_encoder_folder_serves_rerank_to_its_owner_only(client_for, tiny_dir):
    from ..uploads.helpers import deploy, hf_folder_zip

    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, BACKEND="torch")
    built = deploy(api.client, api.headers, "my-reranker", hf_folder_zip(tiny_dir["cross_encoder"], ["rerank"]))
    assert built["build_status"] == "success", built

    body = {"query": QUERY, "texts": DOCUMENTS, "model": "my-reranker"}
    mine = api.client.post("/rerank", json=body, headers=api.headers)
    cohere = api.client.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS, "model": "my-reranker"},
                             headers=api.headers)
    theirs = api.client.post("/rerank", json=body, headers=api.headers_for("bob"))

    assert mine.status_code == 200, mine.json
    expected = library_scores(tiny_dir["cross_encoder"])
    assert {hit["index"]: hit["score"] for hit in mine.json} == pytest.approx(dict(enumerate(expected)), abs=1e-5)
    assert cohere.status_code == 200, cohere.json
    assert [result["index"] for result in cohere.json["results"]] == [hit["index"] for hit in mine.json]
    assert theirs.status_code == 404, theirs.json


def test_a_large_rerank_counts_per_batch_of_documents_and_takes_a_larger_body(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir, BACKEND="torch", ACCOUNT_REQUESTS_PER_MIN=5, MAX_BATCH_SIZE=8,
                     MAX_CONTENT_LENGTH=10_000, MAX_EMBEDDING_BODY_BYTES=200_000)
    documents = [f"{DOCUMENTS[i % len(DOCUMENTS)]} " * 20 for i in range(24)]  # ~24 KB, over the default limit

    answer = api.client.post("/rerank", json={"query": QUERY, "documents": documents}, headers=api.headers)

    assert answer.status_code == 200, answer.json
    assert answer.headers["x-ratelimit-remaining-requests"] == "2"  # 24 documents: 3 requests of 8
    never = api.client.post("/v1/rerank", json={"model": "english", "query": QUERY, "documents": documents * 2},
                            headers=api.headers)
    assert never.status_code == 429 and "can never pass" in never.json["error"]["message"]


def test_prefer_respond_async_answers_the_same_ranking_later_on_both_routes(client_for, tiny_model_dir):
    from ..predictions.test_async_predictions import submit, wait_for

    api = client_for(MODEL_DIR=tiny_model_dir, BACKEND="torch", PREDICTIONS=True, PREDICTION_POLL_S=0.05)
    body = {"query": QUERY, "texts": DOCUMENTS, "top_n": 2}
    native = wait_for(api, submit(api, "/rerank", body)["id"])
    cohere = wait_for(api, submit(api, "/v1/rerank", {"model": "english", "query": QUERY, "documents": DOCUMENTS,
                                                      "top_n": 2})["id"])

    synchronous = api.client.post("/rerank", json=body, headers=api.headers).json
    assert native["status"] == "succeeded" and native["output"] == synchronous
    assert cohere["status"] == "succeeded" and cohere["task"] == "rerank"
    assert [result["index"] for result in cohere["output"]["results"]] == [hit["index"] for hit in synchronous]


OVERLAP_SCORE = '''
def load_model(model_dir):
    return None

def call_model(model, task_input, task):
    query = set(task_input["query"].lower().split())
    return float(len(query & set(task_input["document"].lower().rstrip(".").split())))
'''


def test_uploaded_code_ranks_by_its_own_scores_and_a_many_label_folder_is_refused(client_for, tiny_dir):
    from ..uploads.helpers import deploy, hf_folder_zip, make_zip

    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    code = make_zip({"inference.py": OVERLAP_SCORE, "requirements.txt": "",
                     "config.json": json.dumps({"description": "word overlap", "tasks": ["rerank"]})})
    assert deploy(api.client, api.headers, "overlap", code)["build_status"] == "success"
    three_labels = deploy(api.client, api.headers, "nli-as-reranker", hf_folder_zip(tiny_dir["nli"], ["rerank"]))

    documents = ["Dogs bark.", "Cats spend the day asleep.", "How do cats spend their day?"]
    answer = api.client.post("/rerank", json={"query": QUERY, "texts": documents, "model": "overlap",
                                              "raw_scores": True}, headers=api.headers)
    assert answer.status_code == 200, answer.json
    assert answer.json == [{"index": 2, "score": 6.0}, {"index": 1, "score": 2.0}, {"index": 0, "score": 0.0}]
    assert three_labels["build_status"] == "fail"
    assert "3 output labels" in three_labels["build_message"], three_labels
