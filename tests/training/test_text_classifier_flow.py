"""The issue's end-to-end path for text, over HTTP, on the real packaged MiniLM:
a CSV file upload -> ready with its statistics -> SetFit training whose epochs
are readable while it runs -> version 1 answers /text-classification without
labels -> version 2 -> name@1 still answers -> promote back to 1."""

import io

import pytest
import requests

from ..conftest import LiveServer
from .flow import start_job, wait_dataset, wait_job

POSITIVE = ["I love this", "what a great day", "wonderful film", "happy and joyful", "this is excellent",
            "brilliant work", "I enjoyed it a lot", "fantastic service", "superb meal", "lovely people",
            "delightful trip", "great value"]
NEGATIVE = ["I hate this", "what an awful day", "terrible film", "sad and miserable", "this is horrible",
            "dreadful work", "I regret buying it", "awful service", "disgusting meal", "rude people",
            "miserable trip", "a waste of money"]


def reviews_csv() -> bytes:
    lines = ["review,sentiment"] + [f'"{text}",positive' for text in POSITIVE] + [f'"{text}",negative' for text in NEGATIVE]
    lines.insert(5, "")  # an empty line: counted, not fatal
    lines.insert(9, '"no label here",')  # a bad row: listed with its line number
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def api(client_for):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1)


def test_reviews_to_a_served_classifier_with_versions(api):
    client, headers = api.client, api.headers
    created = client.post("/datasets", headers=headers, content_type="multipart/form-data", data={
        "file": (io.BytesIO(reviews_csv()), "reviews.csv"), "name": "reviews", "text_column": "review",
        "label_column": "sentiment"})
    assert created.status_code == 201, created.json
    dataset = wait_dataset(client, headers, created.json["id"])
    assert dataset["status"] == "ready", dataset["parse_logs"]
    stats = dataset["stats"]
    assert (dataset["format"], stats["rows"], stats["labels"]) == ("text-label", 24, {"positive": 12, "negative": 12})
    assert stats["empty_rows"] == 1 and stats["empty_row_lines"] == [6]
    assert stats["bad_rows"] == 1 and stats["bad_row_lines"][0]["line"] == 10
    assert stats["input_lengths"]["max"] == max(len(text) for text in POSITIVE + NEGATIVE)

    body = {"task": "text-classification", "dataset_id": dataset["id"], "validation_split": 0.25,
            "hyperparameters": {"epochs": 3, "num_iterations": 5, "batch_size": 16}}
    job = start_job(client, headers, "sentiment", **body)
    assert job["base_model"] == "all-MiniLM-L6-v2"  # the trainer's default, as used
    seen: list = []
    done = wait_job(client, headers, job["id"], seen=seen)
    assert done["status"] == "succeeded", done["message"]
    # Statistics are readable while the job runs: some poll saw a running job with epochs.
    assert any(state["status"] == "running" and state["epochs"] for state in seen)
    assert [entry["epoch"] for entry in done["epochs"]] == [1, 2, 3]
    for entry in done["epochs"]:
        assert {"train_loss", "validation_loss", "accuracy", "macro_f1", "per_class", "confusion_matrix"} <= set(entry)
    assert done["metrics"]["accuracy"] >= 0.8  # a separable toy set: far better than chance (0.5)
    assert done["metrics"]["confusion_matrix"]["labels"]

    answer = client.post("/text-classification", json={"text": "a truly wonderful evening", "model": "sentiment"},
                         headers=headers)
    assert answer.status_code == 200, answer.json
    assert set(answer.json["probabilities"]) == {"positive", "negative"}
    assert max(answer.json["probabilities"], key=answer.json["probabilities"].get) == "positive"
    subset = client.post("/text-classification", headers=headers, json={
        "text": "awful", "labels": ["negative"], "model": "sentiment"}).json
    assert subset["probabilities"] == {"negative": 1.0}
    unknown = client.post("/text-classification", headers=headers, json={
        "text": "awful", "labels": ["spam"], "model": "sentiment"})
    assert unknown.status_code == 422 and "positive" in unknown.json["message"]

    second = wait_job(client, headers, start_job(client, headers, "sentiment", **{
        **body, "hyperparameters": {"epochs": 1, "num_iterations": 5}})["id"])
    assert second["status"] == "succeeded" and second["version"] == 2
    at_one = client.post("/text-classification", json={"text": "lovely", "model": "sentiment@1"}, headers=headers)
    assert at_one.status_code == 200 and set(at_one.json["probabilities"]) == {"positive", "negative"}
    assert client.post("/text-classification", json={"text": "x", "model": "sentiment@9"},
                       headers=headers).status_code == 404
    assert client.post("/models/sentiment/versions/1/promote", headers=headers).json["serving"] is True
    served = client.get("/models/sentiment/versions", headers=headers).json
    assert [(v["version"], v["serving"], v["source"]) for v in served] == [(1, True, "training"), (2, False, "training")]


def test_a_large_dataset_goes_through_its_signed_upload_url(client_for):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1)
    client, headers = api.client, api.headers
    created = client.post("/datasets", json={"upload": True, "name": "big"}, headers=headers)
    assert created.status_code == 201 and created.json["status"] == "awaiting_upload"
    url = created.json["upload_url"]
    assert "/dataset-uploads/" in url and "signature=" in url
    with LiveServer(api.app) as server:
        put_url = server.url + url[url.index("/dataset-uploads/"):]
        assert requests.put(put_url, data=reviews_csv(), timeout=30).status_code == 200
        assert requests.put(put_url, data=reviews_csv(), timeout=30).status_code == 409  # used once
        forged = put_url.replace("signature=", "signature=0")
        assert requests.put(forged, data=b"x", timeout=30).status_code == 403
    dataset = wait_dataset(client, headers, created.json["id"])
    assert dataset["status"] == "ready" and dataset["stats"]["rows"] == 24
    assert dataset["size_bytes"] == len(reviews_csv())


def test_direct_datasets_over_the_documented_limit_are_refused(client_for):
    api = client_for(DATASET_MAX_DIRECT_BYTES=1000)
    big = "text,label\n" + "x,y\n" * 400
    answer = api.client.post("/datasets", json={"data": big}, headers=api.headers)
    assert answer.status_code == 413 and "INFER_DATASET_MAX_DIRECT_BYTES" in answer.json["message"]
    both = api.client.post("/datasets", json={"data": "a,b\n", "upload": True}, headers=api.headers)
    assert both.status_code == 400 and "exactly one" in both.json["message"]
    assert api.client.post("/datasets", json={"data": ""}, headers=api.headers).status_code == 400
    unknown = api.client.post("/datasets", json={"data": "a,b\n", "format": "parquet"}, headers=api.headers)
    assert unknown.status_code == 422 and "tabular" in unknown.json["message"]
    assert api.client.get("/datasets", headers=api.headers).json == []  # nothing half-made was kept
