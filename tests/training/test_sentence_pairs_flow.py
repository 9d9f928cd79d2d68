"""A text-vectorisation job over HTTP from text pairs, on the packaged MiniLM, with a
test dataset: every epoch reports right_positive_accuracy on a sample of the
training rows too (train_right_positive_accuracy, train_metrics_rows), and the
job's test_metrics are the kept model's on the test rows, as sentence-transformers
computes them on the published version's folder. Another account's test dataset
is a 404, one of another format a 422."""

import numpy as np
import pytest

from .flow import add_dataset, start_job, version_files_dir, wait_job
from .test_sentence_pairs_trainer import PAIRS


@pytest.fixture
def api(client_for):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1, TRAINING_TRAIN_METRICS_ROWS=10)


def pairs_csv(rows) -> str:
    return "anchor,positive\n" + "".join(f'"{row["anchor"]}","{row["positive"]}"\n' for row in rows)


def right_positive_accuracy(model_dir: str, rows) -> float:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu", local_files_only=True)
    anchors = model.encode([row["anchor"] for row in rows], normalize_embeddings=True)
    positives = model.encode([row["positive"] for row in rows], normalize_embeddings=True)
    return float(np.mean((anchors @ positives.T).argmax(axis=1) == np.arange(len(rows))))


def test_a_pairs_job_reports_train_metrics_and_scores_its_test_dataset_with_the_kept_model(api):
    client, headers = api.client, api.headers
    train = add_dataset(client, headers, pairs_csv(PAIRS[:20]))
    test = add_dataset(client, headers, pairs_csv(PAIRS[20:]))
    assert train["format"] == test["format"] == "text-pairs", (train, test)

    job = start_job(client, headers, "pair-vectors", task="text-vectorisation", dataset_id=train["id"],
                    validation_split=0.2, test_dataset_id=test["id"],
                    hyperparameters={"epochs": 2, "batch_size": 8})
    done = wait_job(client, headers, job["id"])

    assert done["status"] == "succeeded", done["message"]
    assert [epoch["epoch"] for epoch in done["epochs"]] == [1, 2]
    for epoch in done["epochs"]:
        assert epoch["train_metrics_rows"] == min(done["train_rows"], 10) == 10
        assert 0 <= epoch["train_right_positive_accuracy"] <= 1 and 0 <= epoch["right_positive_accuracy"] <= 1
    files = version_files_dir(api.app, "pair-vectors", 1)
    expected = right_positive_accuracy(files, PAIRS[20:])
    assert done["test_metrics"] == {"right_positive_accuracy": pytest.approx(expected), "rows": len(PAIRS) - 20}
    version = client.get("/models/pair-vectors/versions/1", headers=headers).json
    assert version["metrics"]["test_right_positive_accuracy"] == done["test_metrics"]["right_positive_accuracy"]


def test_a_test_dataset_of_another_account_or_format_is_refused(api):
    client, headers = api.client, api.headers
    train = add_dataset(client, headers, pairs_csv(PAIRS[:20]))
    scored = add_dataset(client, headers, "sentence1,sentence2,score\n" + "".join(
        f'"{row["anchor"]}","{row["positive"]}",1\n' for row in PAIRS[20:]))
    mallory = api.headers_for("mallory")
    theirs = add_dataset(client, mallory, pairs_csv(PAIRS[20:]))
    body = {"task": "text-vectorisation", "dataset_id": train["id"]}

    other_format = client.post("/models/vectors/train", json={**body, "test_dataset_id": scored["id"]}, headers=headers)
    other_account = client.post("/models/vectors/train", json={**body, "test_dataset_id": theirs["id"]}, headers=headers)
    missing = client.post("/models/vectors/train", json={**body, "test_dataset_id": "ds_missing"}, headers=headers)

    assert other_format.status_code == 422 and "test_dataset_id" in other_format.json["message"]
    assert other_account.status_code == missing.status_code == 404
    assert other_account.json["message"].replace(theirs["id"], "ds_missing") == missing.json["message"]
