"""The stored-bytes quota covers everything an account stores: model versions,
datasets (the upload and its parsed files) and the checkpoints of running jobs.
One account filling its quota with datasets or checkpoints is refused (403,
saying what takes the space and what to delete) or has its parse or job
failed; another account is served as before. Over HTTP, with real parses and
real training children in the sandbox."""

import os

import pytest

from core.tables import Dataset, TrainingJob
from training.sandboxed import TRAIN_MODULE, ChildSandbox
from uploads.quotas import stored_usage
from web.settings import settings_of

from ..training.flow import add_dataset, iris_csv, start_job, wait_job

MIB = 2**20


def labelled_csv(size_bytes: int) -> str:
    """A text-label CSV of about `size_bytes` (its parsed rows take more)."""
    line = "a sentence that takes up some room in the dataset,{}\n"
    rows = size_bytes // len(line.format("x"))
    return "text,label\n" + "".join(line.format("ab"[n % 2]) for n in range(rows))


def _usage(api, account_headers) -> int:
    from core.keys import find_active_key, hash_key

    with api.app.extensions["db"].sessions() as session:
        account_id = find_active_key(session, hash_key(account_headers["x-api-key"])).account_id
        return stored_usage(session, account_id).total


def _dataset_folder(api, dataset_id: str) -> str:
    return os.path.join(settings_of(api.app).data_dir, "datasets", dataset_id)


@pytest.fixture
def api(client_for):
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1, ACCOUNT_MAX_STORED_MB=1)


@pytest.fixture
def training_api(client_for):
    """Room for a real job's files (about 1 MiB), not for the test's growing ones."""
    return client_for(TRAINER=True, TRAINING_POLL_S=0.1, ACCOUNT_MAX_STORED_MB=8)


def test_datasets_count_a_parse_that_goes_over_fails_and_a_full_account_gets_403s(api):
    client = api.client
    attacker, victim = api.headers_for("attacker"), api.headers_for("victim")
    small = add_dataset(client, attacker, iris_csv())
    assert small["status"] == "ready"

    # 0.6 MiB uploaded fits; with its parsed rows it does not: the parse fails, keeping only the upload.
    big = add_dataset(client, attacker, labelled_csv(int(0.6 * MIB)))
    assert big["status"] == "failed" and big["stats"] is None
    assert "INFER_ACCOUNT_MAX_STORED_MB" in big["message"] and "in datasets" in big["message"]
    assert big["message"].startswith("This dataset (its upload and its parsed rows and images) takes")
    assert "DELETE /datasets/{id}" in big["message"]
    assert sorted(os.listdir(_dataset_folder(api, big["id"]))) == ["parse.out", "parse_request.json", "source"]
    with api.app.extensions["db"].sessions() as session:
        assert session.get(Dataset, big["id"]).stored_bytes == big["size_bytes"] + os.path.getsize(
            os.path.join(_dataset_folder(api, big["id"]), "parse.out")) + os.path.getsize(
            os.path.join(_dataset_folder(api, big["id"]), "parse_request.json"))

    second = add_dataset(client, attacker, labelled_csv(int(0.5 * MIB)))
    assert second["status"] == "failed"
    assert _usage(api, attacker) >= MIB  # the two uploads, kept, fill the account

    refused = client.post("/datasets", json={"data": iris_csv()}, headers=attacker)
    assert refused.status_code == 403
    assert refused.json["message"].startswith("Cannot create a dataset: this account stores 1.")
    assert "in datasets" in refused.json["message"] and "INFER_ACCOUNT_MAX_STORED_MB" in refused.json["message"]
    by_url = client.post("/datasets", json={"upload": True}, headers=attacker)
    assert by_url.status_code == 403 and by_url.json["message"].startswith("Cannot create a dataset")
    upload = client.post("/upload-url", json={"model_name": "another"}, headers=attacker)
    assert upload.status_code == 403 and upload.json["message"].startswith("Cannot upload a model")
    training = client.post("/models/iris/train", json={"task": "tabular", "dataset_id": small["id"]},
                           headers=attacker)
    assert training.status_code == 403 and training.json["message"].startswith("Cannot start a training job")

    # The other account is served as before.
    assert add_dataset(client, victim, iris_csv())["status"] == "ready"
    assert client.post("/upload-url", json={"model_name": "mine"}, headers=victim).status_code == 200

    # Deleting what the message names makes room again.
    for dataset in (big, second):
        assert client.delete(f"/datasets/{dataset['id']}", headers=attacker).status_code == 200
    assert client.post("/datasets", json={"data": iris_csv()}, headers=attacker).status_code == 201


def _checkpoint_writer(monkeypatch, script: str) -> None:
    """A trainer whose files grow as the script says, started by the runner in the
    training child's place (same sandbox, folder and limits: only the command differs)."""
    original = ChildSandbox.command
    monkeypatch.setattr(ChildSandbox, "command", lambda self, module, work_dir: (
        ["/bin/sh", "-c", script] if module == TRAIN_MODULE else original(self, module, work_dir)))


def test_a_job_whose_checkpoints_outgrow_the_quota_is_stopped_and_fails_saying_so(training_api, monkeypatch):
    api = training_api
    client = api.client
    attacker, victim = api.headers_for("attacker"), api.headers_for("victim")
    dataset = add_dataset(client, attacker, iris_csv())
    assert dataset["status"] == "ready"
    # Checkpoints of 3 MB, one a second (each file stays under RLIMIT_FSIZE = the quota), then it waits.
    _checkpoint_writer(monkeypatch, "mkdir -p /job/checkpoints; for n in 1 2 3 4; do "
                                    "head -c 3000000 /dev/zero > /job/checkpoints/epoch-$n.bin; sleep 1; done; sleep 120")
    job = wait_job(client, attacker, start_job(client, attacker, "grower", task="tabular",
                                               dataset_id=dataset["id"])["id"], timeout_s=60)
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["message"].startswith("This job's checkpoints and output takes")
    assert "INFER_ACCOUNT_MAX_STORED_MB" in job["message"]
    assert not os.path.exists(os.path.join(settings_of(api.app).data_dir, "training", job["id"]))
    with api.app.extensions["db"].sessions() as session:
        assert session.get(TrainingJob, job["id"]).stored_bytes == 0
    assert api.app.extensions["training"].running() == []
    assert client.get("/models/grower/versions", headers=attacker).json == []
    monkeypatch.undo()

    # Its space is free again; the other account trains meanwhile and after.
    assert _usage(api, attacker) < MIB
    victim_dataset = add_dataset(client, victim, iris_csv())
    served = wait_job(client, victim, start_job(client, victim, "iris", task="tabular",
                                                dataset_id=victim_dataset["id"])["id"])
    assert served["status"] == "succeeded", served["message"]


def test_a_running_jobs_checkpoints_count_towards_the_quota_while_it_runs(training_api, monkeypatch):
    api = training_api
    client = api.client
    attacker = api.headers_for("attacker")
    dataset = add_dataset(client, attacker, iris_csv())
    _checkpoint_writer(monkeypatch, "mkdir -p /job/checkpoints; head -c 300000 /dev/zero > /job/checkpoints/e.bin; "
                                    "sleep 120")
    job = start_job(client, attacker, "grower", task="tabular", dataset_id=dataset["id"])

    def measured():
        with api.app.extensions["db"].sessions() as session:
            return session.get(TrainingJob, job["id"]).stored_bytes >= 300_000

    from ..conftest import until

    until(measured, 60)
    assert _usage(api, attacker) >= 300_000 + dataset["size_bytes"]
    assert client.post(f"/jobs/{job['id']}/cancel", headers=attacker).status_code == 200
    assert wait_job(client, attacker, job["id"], timeout_s=60)["status"] == "cancelled"
    with api.app.extensions["db"].sessions() as session:
        assert session.get(TrainingJob, job["id"]).stored_bytes == 0  # its folder went with it


def test_a_trained_version_that_would_go_over_fails_its_job(training_api, monkeypatch):
    api = training_api
    client = api.client
    attacker = api.headers_for("attacker")
    dataset = add_dataset(client, attacker, iris_csv())
    result = ('{"event": "result", "result": {"format": "sklearn", "tasks": ["tabular"], "best_epoch": 1, '
              '"metrics": {}, "description": "", "samples_per_second": 1.0}}')
    _checkpoint_writer(monkeypatch, "mkdir -p /job/output; for n in 1 2 3; do head -c 3000000 /dev/zero > "
                                    f"/job/output/part-$n.bin; done; echo '{result}'")
    job = wait_job(client, attacker, start_job(client, attacker, "big", task="tabular",
                                               dataset_id=dataset["id"])["id"], timeout_s=60)
    assert job["status"] == "failed" and "INFER_ACCOUNT_MAX_STORED_MB" in job["message"]
    assert client.get("/models/big/versions", headers=attacker).json == []
    assert _usage(api, attacker) < MIB
