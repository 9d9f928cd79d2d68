"""Training a reranker over HTTP: a scored-pairs CSV -> a rerank job from the catalogue's
cross-encoder (a tiny random-weight stand-in) -> the new model answers /rerank and
/v1/rerank for its owner, with scores that moved from the base model's; another
account's key gets a 404. A job with a test dataset reports train_ metrics each epoch
and the kept model's test_metrics, as the library scores the published folder."""

import pytest

from .flow import add_dataset, start_job, version_files_dir, wait_job
from .test_cross_encoder_trainer import SCORED, library_scores

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


def scored_csv(rows) -> str:
    return "sentence1,sentence2,score\n" + "".join(
        f'"{row["sentence1"]}","{row["sentence2"]}",{row["score"]}\n' for row in rows)


def test_a_rerank_job_reports_train_metrics_and_scores_its_test_dataset_with_the_kept_model(client_for,
                                                                                            tiny_model_dir):
    from scipy.stats import pearsonr, spearmanr

    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, MODEL_DIR=tiny_model_dir, TRAINING_TRAIN_METRICS_ROWS=12)
    client, headers = api.client, api.headers
    train = add_dataset(client, headers, scored_csv(SCORED[:24]))
    test = add_dataset(client, headers, scored_csv(SCORED[24:]))

    done = wait_job(client, headers, start_job(
        client, headers, "tested-reranker", task="rerank", dataset_id=train["id"], validation_split=0.25,
        test_dataset_id=test["id"], hyperparameters={"epochs": 2, "batch_size": 8, "learning_rate": 2e-3})["id"])

    assert done["status"] == "succeeded", done.get("message")
    for epoch in done["epochs"]:
        assert epoch["train_metrics_rows"] == min(done["train_rows"], 12) == 12
        assert -1 <= epoch["train_spearman"] <= 1 and -1 <= epoch["train_pearson"] <= 1
    test_rows = SCORED[24:]
    scores = library_scores(version_files_dir(api.app, "tested-reranker", 1),
                            [(row["sentence1"], row["sentence2"]) for row in test_rows])
    truth = [row["score"] for row in test_rows]
    assert done["test_metrics"]["spearman"] == pytest.approx(spearmanr(truth, scores).statistic, abs=1e-6)
    assert done["test_metrics"]["pearson"] == pytest.approx(pearsonr(truth, scores).statistic, abs=1e-6)
    assert done["test_metrics"]["rows"] == len(test_rows) and done["test_metrics"]["loss"] > 0
    # To another account, this test dataset answers as a missing one.
    mallory = api.headers_for("mallory")
    body = {"task": "rerank", "dataset_id": add_dataset(client, mallory, scored_csv(SCORED[:8]))["id"]}
    theirs = client.post("/models/theirs/train", json={**body, "test_dataset_id": test["id"]}, headers=mallory)
    missing = client.post("/models/theirs/train", json={**body, "test_dataset_id": "ds_missing"}, headers=mallory)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json["message"].replace(test["id"], "ds_missing") == missing.json["message"]
