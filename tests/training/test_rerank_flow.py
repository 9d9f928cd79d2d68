"""Training a reranker over HTTP: a scored-pairs CSV -> a rerank job from the catalogue's
cross-encoder (a tiny random-weight stand-in) -> the new model answers /rerank and
/v1/rerank for its owner, with scores that moved from the base model's; another
account's key gets a 404."""

import pytest

from .flow import add_dataset, start_job, wait_job
from .test_cross_encoder_trainer import SCORED

QUERY = "Where can I buy a kettle?"
DOCUMENTS = [row["sentence2"] for row in SCORED[:8]]


@pytest.fixture
def api(client_for, tiny_model_dir):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1, MODEL_DIR=tiny_model_dir, BACKEND="torch")


def test_scored_pairs_train_a_reranker_that_serves_its_owner_only(api):
    client, headers = api.client, api.headers
    csv = "sentence1,sentence2,score\n" + "".join(
        f'"{row["sentence1"]}","{row["sentence2"]}",{row["score"]}\n' for row in SCORED)
    dataset = add_dataset(client, headers, csv)
    assert dataset["status"] == "ready" and dataset["format"] == "scored-pairs", dataset

    job = start_job(client, headers, "my-reranker", task="rerank", dataset_id=dataset["id"],
                    hyperparameters={"epochs": 1, "batch_size": 8, "learning_rate": 2e-3})
    assert job["base_model"] == "ms-marco-MiniLM-L6-v2", job
    done = wait_job(client, headers, job["id"])
    assert done["status"] == "succeeded", done.get("message")
    assert done["epochs"][0]["validation_loss"] is not None

    body = {"query": QUERY, "texts": DOCUMENTS}
    trained = client.post("/rerank", json={**body, "model": "my-reranker"}, headers=headers)
    base = client.post("/rerank", json=body, headers=headers)
    cohere = client.post("/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS, "model": "my-reranker"},
                         headers=headers)
    theirs = client.post("/rerank", json={**body, "model": "my-reranker"}, headers=api.headers_for("bob"))

    assert trained.status_code == 200 and base.status_code == 200, (trained.json, base.json)
    scores = {hit["index"]: hit["score"] for hit in trained.json}
    assert scores != pytest.approx({hit["index"]: hit["score"] for hit in base.json}, abs=1e-4)
    assert {result["index"]: result["relevance_score"] for result in cohere.json["results"]} == pytest.approx(scores)
    assert theirs.status_code == 404
