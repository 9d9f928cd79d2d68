"""Bring data, get a served model, over HTTP: iris as a CSV -> a scikit-learn
classifier -> /predict; versions, name@N, promotion and its record."""

import pytest

from .flow import add_dataset, iris_csv, start_job, wait_job

IRIS_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture
def api(client_for):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1)


def test_iris_from_csv_to_versions_promotion_and_name_at_n(api):
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, iris_csv(), name="iris")
    assert dataset["status"] == "ready", dataset["parse_logs"]
    assert dataset["format"] == "tabular"
    assert dataset["stats"]["rows"] == 150
    assert dataset["stats"]["labels"] == {"Iris-setosa": 50, "Iris-versicolor": 50, "Iris-virginica": 50}
    assert dataset["trains"] == ["tabular"]
    assert dataset["parse_logs"] and all({"timestamp", "message"} <= set(line) for line in dataset["parse_logs"])

    job = start_job(client, headers, "iris", task="tabular", dataset_id=dataset["id"])
    assert job["status"] == "queued" and job["object"] == "training.job"
    assert job["hyperparameters"]["estimator"] == "random_forest"  # the defaults the job uses, filled in
    done = wait_job(client, headers, job["id"])
    assert done["status"] == "succeeded", done["message"]
    assert done["version"] == 1 and done["attempts"] == 1
    assert done["train_rows"] == 120 and done["validation_rows"] == 30
    (epoch,) = done["epochs"]
    assert {"epoch", "step", "train_loss", "validation_loss", "learning_rate", "elapsed_s"} <= set(epoch)
    assert epoch["accuracy"] >= 0.9
    assert done["best_epoch"] == 1 and done["metrics"]["confusion_matrix"]["labels"]
    assert done["started_at"] and done["finished_at"]

    single = client.post("/predict", json={"model": "iris", "features": IRIS_ROW}, headers=headers)
    assert single.status_code == 200, single.json
    assert single.json["prediction"] == "Iris-setosa"
    assert abs(sum(single.json["probabilities"].values()) - 1) < 1e-6

    second = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset["id"],
                                                 hyperparameters={"estimator": "logistic_regression"})["id"])
    assert second["status"] == "succeeded" and second["version"] == 2
    versions = client.get("/models/iris/versions", headers=headers).json
    assert [(v["version"], v["source"], v["serving"], v["job_id"]) for v in versions] == [
        (1, "training", False, job["id"]), (2, "training", True, second["id"])]
    assert versions[0]["dataset_id"] == dataset["id"] and versions[0]["metrics"]["accuracy"] >= 0.9
    assert client.post("/predict", json={"model": "iris@1", "features": [IRIS_ROW]},
                       headers=headers).json["prediction"] == ["Iris-setosa"]

    promoted = client.post("/models/iris/versions/1/promote", headers=headers)
    assert promoted.status_code == 200 and promoted.json["serving"] is True
    history = client.get("/models/iris/serving-history", headers=headers).json
    assert [(m["from_version"], m["to_version"], m["reason"]) for m in history] == [
        (None, 1, "training"), (1, 2, "training"), (2, 1, "promote")]
    assert [v["serving"] for v in client.get("/models/iris/versions", headers=headers).json] == [True, False]
    listed = client.get("/models", headers=headers).json
    assert [(m["name"], m["tasks"], m["build_status"]) for m in listed] == [("iris", ["tabular"], "success")]


def test_another_account_cannot_see_or_use_datasets_jobs_or_versions(api):
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, iris_csv())
    job = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset["id"])["id"])
    mallory = api.headers_for("mallory")
    for path in (f"/datasets/{dataset['id']}", f"/jobs/{job['id']}", f"/jobs/{job['id']}/log", "/models/iris/versions"):
        assert client.get(path, headers=mallory).status_code == 404, path
    assert client.get("/datasets", headers=mallory).json == []
    assert client.get("/jobs", headers=mallory).json["data"] == []
    assert client.delete(f"/datasets/{dataset['id']}", headers=mallory).status_code == 404
    assert client.post(f"/jobs/{job['id']}/cancel", headers=mallory).status_code == 404
    assert client.post("/models/iris/versions/1/promote", headers=mallory).status_code == 404
    # Training on someone else's dataset: it does not exist for mallory.
    stolen = client.post("/models/mine/train", json={"task": "tabular", "dataset_id": dataset["id"]}, headers=mallory)
    assert stolen.status_code == 404
    assert client.post("/predict", json={"model": "iris", "features": IRIS_ROW}, headers=mallory).status_code == 404
    # Mallory's own "iris" is a model of hers; alice's is untouched.
    assert len(client.get("/models/iris/versions", headers=headers).json) == 1


def test_training_requests_that_cannot_work_are_refused_with_what_to_fix(api):
    client, headers = api.client, api.headers
    tabular = add_dataset(client, headers, iris_csv())
    text = add_dataset(client, headers, "text,label\n" + "".join(f"good {i},pos\nbad {i},neg\n" for i in range(10)))
    assert text["status"] == "ready" and text["format"] == "text-label"

    def refused(body, name="my-model"):
        answer = client.post(f"/models/{name}/train", json=body, headers=headers)
        assert 400 <= answer.status_code < 500, answer.json
        return answer.status_code, answer.json["message"]

    code, message = refused({"task": "text-classification", "dataset_id": tabular["id"]})
    assert code == 422 and "tabular" in message and "text-label" in message
    code, message = refused({"task": "summarisation", "dataset_id": text["id"]})
    assert code == 422 and "cannot be trained" in message and "text-classification" in message
    code, message = refused({"task": "text-classification", "dataset_id": text["id"], "base_model": "bart-large-mnli"})
    assert code == 422 and "all-MiniLM-L6-v2" in message
    code, message = refused({"task": "tabular", "dataset_id": tabular["id"], "hyperparameters": {"epochs": 10_000}})
    assert code == 422 and "hyperparameters.epochs" in message
    code, message = refused({"task": "tabular", "dataset_id": tabular["id"], "hyperparameters": {"estimator": "magic"}})
    assert code == 422 and "hyperparameters.estimator" in message
    code, message = refused({"task": "tabular", "dataset_id": tabular["id"], "validation_split": 0.9})
    assert code == 422 and "validation_split" in message
    code, message = refused({"task": "tabular", "dataset_id": "ds_missing"})
    assert code == 404
    code, message = refused({"task": "tabular", "dataset_id": tabular["id"]}, name="english")
    assert code == 409 and "global model" in message
    code, message = refused({"task": "tabular", "dataset_id": tabular["id"]}, name="Bad Name")
    assert code == 422


def test_a_dataset_that_fails_to_parse_says_why_and_cannot_train(api):
    client, headers = api.client, api.headers
    failed = add_dataset(client, headers, "text,label\nonly one label,pos\nanother,pos\n")
    assert failed["status"] == "failed"
    assert "label" in failed["message"]
    assert any("label" in line["message"] for line in failed["parse_logs"])
    answer = client.post("/models/my-model/train", json={"task": "text-classification", "dataset_id": failed["id"]},
                         headers=headers)
    assert answer.status_code == 409 and "failed to parse" in answer.json["message"]


def test_jobs_list_newest_first_with_filters_and_cursor_pages(api):
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, iris_csv())
    ids = [start_job(client, headers, name, task="tabular", dataset_id=dataset["id"])["id"]
           for name in ("a-model", "b-model", "a-model")]
    for job_id in ids:
        wait_job(client, headers, job_id)
    page = client.get("/jobs?limit=2", headers=headers).json
    assert page["object"] == "list" and page["has_more"] is True
    assert [job["id"] for job in page["data"]] == ids[::-1][:2]
    rest = client.get(f"/jobs?limit=2&after={page['data'][-1]['id']}", headers=headers).json
    assert [job["id"] for job in rest["data"]] == [ids[0]] and rest["has_more"] is False
    only_a = client.get("/jobs?model=a-model", headers=headers).json["data"]
    assert [job["id"] for job in only_a] == [ids[2], ids[0]]
    assert client.get("/jobs?status=running", headers=headers).json["data"] == []
    assert len(client.get("/jobs?status=succeeded", headers=headers).json["data"]) == 3
    assert client.get("/jobs?status=bogus", headers=headers).status_code == 422


def test_a_dataset_in_use_by_a_queued_job_cannot_be_deleted(client_for):
    api = client_for()  # no runner: the job stays queued
    client, headers = api.client, api.headers
    created = client.post("/datasets", json={"data": iris_csv()}, headers=headers).json
    api.app.extensions["dataset_parses"].run(created["id"])  # parse it here, with no runner thread
    job = start_job(client, headers, "iris", task="tabular", dataset_id=created["id"])
    assert client.get("/models/iris", headers=headers).json["build_status"] == "building"  # its first job waits
    answer = client.delete(f"/datasets/{created['id']}", headers=headers)
    assert answer.status_code == 409 and job["id"] in answer.json["message"]
    cancelled = client.post(f"/jobs/{job['id']}/cancel", headers=headers)
    assert cancelled.json["status"] == "cancelled"
    assert client.post(f"/jobs/{job['id']}/cancel", headers=headers).status_code == 409
    assert client.get("/models/iris", headers=headers).json["build_status"] == "awaiting_upload"
    assert client.delete(f"/datasets/{created['id']}", headers=headers).status_code == 200
    assert client.get(f"/datasets/{created['id']}", headers=headers).status_code == 404


def test_trainers_lists_each_trainable_task_with_its_hyperparameters_and_limits(api):
    answer = api.client.get("/trainers", headers=api.headers)
    trainers = {trainer["task"]: trainer for trainer in answer.json}
    assert set(trainers) == {"tabular", "text-classification", "text-vectorisation", "text-generation",
                             "image-classification", "rerank"}
    lora = trainers["text-generation"]
    assert lora["default_base_model"] == "smollm2-135m-instruct" and "gpt2-large" in lora["base_models"]
    assert lora["hyperparameters"]["lora_r"] == {"type": "integer", "default": 8, "min": 1, "max": 256,
                                                 "description": lora["hyperparameters"]["lora_r"]["description"]}
    assert "random_forest" in trainers["tabular"]["hyperparameters"]["estimator"]["choices"]
    assert trainers["tabular"]["base_models"] == [] and trainers["tabular"]["dataset_formats"] == ["tabular"]


def test_a_regression_on_its_own_columns_trains_and_predicts_numbers(api):
    client, headers = api.client, api.headers
    rows = "".join(f"{x},{x % 7},{3 * x + (x % 7) / 10:.2f}\n" for x in range(60))
    dataset = add_dataset(client, headers, "size,rooms,price\n" + rows)
    assert dataset["status"] == "ready" and dataset["stats"]["label_column"] == "price"
    done = wait_job(client, headers, start_job(client, headers, "prices", task="tabular", dataset_id=dataset["id"],
                                               hyperparameters={"estimator": "ridge"})["id"])
    assert done["status"] == "succeeded", done["message"]
    assert done["epochs"][0]["r2"] > 0.9 and done["epochs"][0]["mae"] is not None
    answer = client.post("/predict", json={"model": "prices", "features": {"size": 10, "rooms": 3}}, headers=headers)
    assert answer.status_code == 200, answer.json
    assert abs(answer.json["prediction"] - 30.3) < 3 and answer.json["probabilities"] is None
    wrong = client.post("/predict", json={"model": "prices", "features": {"size": 10}}, headers=headers)
    assert wrong.status_code == 422 and "rooms" in wrong.json["message"]


def test_a_training_process_over_its_memory_cap_stops_and_the_job_fails_naming_the_setting(client_for):
    # 256 MB of address space is less than torch alone maps: the process cannot go on.
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, TRAINING_MEMORY_MB=256, TRAINING_MAX_ATTEMPTS=2)
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, iris_csv())
    done = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset["id"])["id"])
    assert done["status"] == "failed"
    assert "INFER_TRAINING_MEMORY_MB" in done["message"] and "256 MB" in done["message"]
    assert client.get("/models/iris/versions", headers=headers).json == []
