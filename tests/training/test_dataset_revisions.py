"""Editable datasets over HTTP: each edit (add samples, remove by id or uid,
remove a class) makes a new revision with its own statistics; old revisions
stay readable and trainable; images come as base64 or by URL through the
webhook destination guard; edits are checked as uploads are, and two at once
both land."""

import base64
import http.server
import io
import threading

import pytest

from .flow import add_dataset, iris_csv, start_job, wait_job

TEXT_ROWS = "text,label\n" + "".join(f"good thing {n},pos\nbad thing {n},neg\n" for n in range(6))


@pytest.fixture
def api(client_for):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1)


def _revision_stats(client, headers, dataset_id, revision):
    shown = client.get(f"/datasets/{dataset_id}?revision={revision}", headers=headers)
    assert shown.status_code == 200, shown.json
    assert shown.json["revision"] == revision
    return shown.json["stats"]


def test_a_dataset_edited_three_times_keeps_each_revision_and_its_statistics(api):
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, TEXT_ROWS, name="reviews")
    assert dataset["status"] == "ready" and dataset["revision"] == 1 and dataset["latest_revision"] == 1
    dataset_id = dataset["id"]
    first_page = client.get(f"/datasets/{dataset_id}/samples?limit=3", headers=headers).json
    assert first_page["total"] == 12 and first_page["revision"] == 1
    assert [row["id"] for row in first_page["data"]] == ["s1", "s2", "s3"]
    assert first_page["data"][0] == {"id": "s1", "text": "good thing 0", "label": "pos"}

    # 1: add rows, one of a new class, with uids of the caller's.
    added = client.post(f"/datasets/{dataset_id}/samples", headers=headers, json={"samples": [
        {"text": "meh thing", "label": "neutral", "uid": "u-1"},
        {"text": "so-so thing", "label": "neutral", "uid": "u-2"},
        {"text": "great thing", "label": "pos"}]})
    assert added.status_code == 201, added.json
    assert added.json["revision"] == 2 and added.json["change"] == {"kind": "add", "added": 3, "removed": 0}
    assert len(added.json["sample_ids"]) == 3 and len(set(added.json["sample_ids"])) == 3
    assert added.json["stats"]["rows"] == 15
    assert added.json["stats"]["labels"] == {"neg": 6, "neutral": 2, "pos": 7}

    # 2: remove by uid (and by id, in the same edit).
    removed = client.post(f"/datasets/{dataset_id}/samples/delete", headers=headers,
                          json={"uids": ["u-1"], "ids": ["s2"]})
    assert removed.status_code == 200, removed.json
    assert removed.json["revision"] == 3 and removed.json["change"] == {"kind": "remove", "added": 0, "removed": 2}
    assert removed.json["stats"]["labels"] == {"neg": 5, "neutral": 1, "pos": 7}

    # 3: remove a class.
    without = client.delete(f"/datasets/{dataset_id}/classes/neutral", headers=headers)
    assert without.status_code == 200, without.json
    assert without.json["revision"] == 4 and without.json["change"]["kind"] == "remove-class"
    assert without.json["stats"]["labels"] == {"neg": 5, "pos": 7} and without.json["stats"]["rows"] == 12

    latest = client.get(f"/datasets/{dataset_id}", headers=headers).json
    assert latest["revision"] == latest["latest_revision"] == 4 and latest["stats"]["rows"] == 12
    revisions = client.get(f"/datasets/{dataset_id}/revisions", headers=headers).json
    assert [(r["revision"], r["change"]["kind"], r["stats"]["rows"]) for r in revisions] == [
        (1, "upload", 12), (2, "add", 15), (3, "remove", 13), (4, "remove-class", 12)]
    # Each revision's statistics and rows stay as they were.
    assert _revision_stats(client, headers, dataset_id, 1)["labels"] == {"neg": 6, "pos": 6}
    assert _revision_stats(client, headers, dataset_id, 2)["labels"] == {"neg": 6, "neutral": 2, "pos": 7}
    assert _revision_stats(client, headers, dataset_id, 3)["input_lengths"]["min"] == len("so-so thing")
    old = client.get(f"/datasets/{dataset_id}/samples?revision=2&limit=100", headers=headers).json
    assert old["total"] == 15 and {"text": "meh thing", "label": "neutral", "uid": "u-1"}.items() <= next(
        row for row in old["data"] if row.get("uid") == "u-1").items()
    now = client.get(f"/datasets/{dataset_id}/samples?limit=100", headers=headers).json
    assert now["revision"] == 4 and "s2" not in {row["id"] for row in now["data"]}
    assert client.get(f"/datasets/{dataset_id}?revision=5", headers=headers).status_code == 404


def _confusion(job: dict) -> tuple:
    metrics = job["metrics"]
    return metrics["accuracy"], metrics["macro_f1"], metrics["confusion_matrix"]


def test_a_job_on_revision_2_trains_on_revision_2_after_revision_3_exists(api):
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, iris_csv(), name="iris")
    dataset_id = dataset["id"]
    # Revision 2: every third row gone (by id); revision 3 will lose a class too.
    ids = [f"s{n}" for n in range(1, 151, 3)]
    second = client.delete(f"/datasets/{dataset_id}/samples", headers=headers, json={"ids": ids})
    assert second.status_code == 200 and second.json["revision"] == 2 and second.json["stats"]["rows"] == 100

    before = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset_id,
                                                 hyperparameters={"seed": 7})["id"])
    assert before["status"] == "succeeded", before["message"]
    assert before["dataset_revision"] == 2  # the latest, when it started
    assert before["train_rows"] + before["validation_rows"] == 100

    third = client.delete(f"/datasets/{dataset_id}/classes/Iris-setosa", headers=headers)
    assert third.status_code == 200 and third.json["revision"] == 3
    assert set(third.json["stats"]["labels"]) == {"Iris-versicolor", "Iris-virginica"}

    again = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset_id,
                                                dataset_revision=2, hyperparameters={"seed": 7})["id"])
    assert again["status"] == "succeeded", again["message"]
    assert again["dataset_revision"] == 2 and again["train_rows"] == before["train_rows"]
    assert _confusion(again) == _confusion(before)  # the same rows, the same model: the same metrics
    assert len(before["metrics"]["confusion_matrix"]["labels"]) == 3

    latest = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset_id,
                                                 hyperparameters={"seed": 7})["id"])
    assert latest["status"] == "succeeded" and latest["dataset_revision"] == 3
    assert sorted(latest["metrics"]["confusion_matrix"]["labels"]) == ["Iris-versicolor", "Iris-virginica"]
    too_new = client.post("/models/iris/train", headers=headers,
                          json={"task": "tabular", "dataset_id": dataset_id, "dataset_revision": 4})
    assert too_new.status_code == 422 and "revisions 1 to 3" in too_new.json["message"]
