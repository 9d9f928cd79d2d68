"""A job's epoch checkpoints in the shared store (S3, SeaweedFS here): two worker
processes on Redis and PostgreSQL, each with its OWN data dir as on two hosts;
the one running a job is killed with -9 once two epochs are in the bucket, and
the other, which never saw the job's folder, resumes it from the bucket's
checkpoint instead of epoch 1; a search resumes from its finished trials the
same way. The bucket keeps nothing of the job once it ends."""

import io
import json
import os
import signal
import tarfile

import pytest

from ..conftest import ApiClient
from ..seaweedfs import seaweed_for_module
from ..training.flow import add_dataset, start_job, until, wait_job
from ..training.test_search import linear_csv, search_body
from .test_workers import MANY_EPOCHS, _finished_on
from .workers import start_workers, stop_workers

BUCKET = "shared-checkpoints"


@pytest.fixture(scope="module")
def seaweed():
    yield from seaweed_for_module(BUCKET)


@pytest.fixture
def two_hosts(postgres, redis_url, make_app, tiny_model_dir, tmp_path, seaweed, monkeypatch):
    """(an ApiClient of the web app, the two workers, a function listing the
    bucket's keys). The web app and each worker have a data dir of their own;
    they share the database, the queue and the bucket."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")  # the workers inherit the test's environment
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    prefix = "two-hosts/"
    config = {"QUEUE_URL": redis_url, "DATABASE_URL": postgres.new_database(), "MODEL_DIR": tiny_model_dir,
              "STORAGE": "s3", "S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": seaweed.endpoint, "S3_REGION": "us-east-1",
              "S3_PREFIX": prefix, "QUEUE_SWEEP_S": 0.5, "TRAINING_LEASE_S": 3.0, "BUILD_LEASE_S": 3.0,
              "PREDICTION_LEASE_S": 3.0, "TORCH_THREADS": 1}
    api = ApiClient(make_app(**config, DATA_DIR=str(tmp_path / "web")))
    workers = [start_workers({**config, "DATA_DIR": str(tmp_path / f"host{number}")}, str(tmp_path), 1, redis_url,
                             first=number)[0] for number in range(2)]

    def keys(under: str) -> dict[str, bytes]:
        """{key: object} of the bucket under the prefix (one the mirror deleted between
        the listing and its reading is left out: the bucket moved on)."""
        s3 = seaweed.client()
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + under).get("Contents", [])
        objects = {}
        for item in listed:
            try:
                objects[item["Key"]] = s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            except s3.exceptions.NoSuchKey:
                continue
        return objects

    yield api, workers, keys
    stop_workers(workers)


def _saved_epoch(checkpoint_tar: bytes) -> int:
    """The epoch a checkpoint object holds (its trainer_state.json's)."""
    with tarfile.open(fileobj=io.BytesIO(checkpoint_tar)) as archive:
        return round(json.load(archive.extractfile("trainer_state.json"))["epoch"])


def test_a_job_resumes_from_the_bucket_on_a_worker_with_another_data_dir(two_hosts):
    api, workers, keys = two_hosts
    client, headers = api.client, api.headers
    rows = "".join(json.dumps({"prompt": f"Item {i} is", "completion": f" number {i}."}) + "\n" for i in range(24))
    dataset = add_dataset(client, headers, rows)
    job_id = start_job(client, headers, "writer", task="text-generation", dataset_id=dataset["id"],
                       base_model="gpt2-large", hyperparameters=MANY_EPOCHS)["id"]
    checkpoints = f"training/{job_id}/checkpoints/"
    state = {}

    def two_epochs_in_the_bucket():
        # The report first, then the bucket: every epoch reported then is in the bucket (not trained again).
        state.update(client.get(f"/jobs/{job_id}", headers=headers).json)
        assert state["status"] in ("queued", "running"), state
        stored = keys(checkpoints)
        saved = max((_saved_epoch(body) for body in stored.values()), default=0)
        return state["status"] == "running" and saved >= max(2, len(state["epochs"]))

    until(two_epochs_in_the_bucket, 180)
    assert all(key.endswith(".tar") for key in keys(checkpoints))
    (victim,) = [worker for worker in workers if job_id in worker.claims("training_jobs")]
    (survivor,) = [worker for worker in workers if worker is not victim]
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait()

    # Its lease runs out; the survivor, whose data dir never held the job, fetches
    # the bucket's checkpoints and trains only the epochs after them.
    done = _finished_on(api, job_id, dict(state), survivor)
    assert [entry["epoch"] for entry in done["epochs"]] == list(range(1, MANY_EPOCHS["epochs"] + 1))
    log = client.get(f"/jobs/{job_id}/log", headers=headers).json["log"]
    assert "from the shared store (saved by another worker)" in log
    assert "resuming from the last epoch checkpoint" in log

    generated = client.post("/text-generation", json={"text": "Item 3 is", "model": "writer", "max_length": 4},
                            headers=headers)
    assert generated.status_code == 200, generated.json
    # The job ended: its checkpoints leave the bucket (the version's files stay).
    until(lambda: not keys(f"training/{job_id}/"), 30)
    assert keys("versions/")


def test_a_search_resumes_from_the_bucket_without_training_its_finished_trials_again(two_hosts):
    """A tabular random search: the worker running it is killed with -9 once two
    finished runs are in the bucket; the other, on its own data dir, fetches the
    search's state and trains only the trials not finished."""
    api, workers, keys = two_hosts
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, linear_csv(), name="linear")
    job_id = start_job(client, headers, "searched", **search_body(
        dataset["id"], trials=6, space={"estimator": ["random_forest"], "n_estimators": {"min": 200, "max": 400}}))["id"]
    search = f"training/{job_id}/search/"
    finished = []

    def two_runs_in_the_bucket():
        state = client.get(f"/jobs/{job_id}", headers=headers).json
        assert state["status"] in ("queued", "running"), state
        stored = keys(search)
        finished[:] = max(([int(run.split("@")[0]) for run in _search_runs(body)]
                           for key, body in stored.items() if "/state-" in key), key=len, default=[])
        return len(finished) >= 2

    until(two_runs_in_the_bucket, 180)
    (victim,) = [worker for worker in workers if job_id in worker.claims("training_jobs")]
    (survivor,) = [worker for worker in workers if worker is not victim]
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait()

    done = wait_job(client, headers, job_id, timeout_s=240)
    assert done["status"] == "succeeded", done["message"]
    assert done["attempts"] == 2 and survivor.claims("training_jobs") == [job_id]
    assert sorted(trial["trial"] for trial in done["trials"]) == list(range(1, 7))
    assert [trial["status"] for trial in done["trials"]] == ["kept"] * 6
    log = client.get(f"/jobs/{job_id}/log", headers=headers).json["log"]
    assert "fetched the search's state from the shared store" in log
    for number in finished:  # trained by the victim only
        assert log.count(f"trial {number}: regression with random_forest") == 1, number
    assert "is the best" in log
    until(lambda: not keys(f"training/{job_id}/"), 30)


def _search_runs(state_tar: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(state_tar)) as archive:
        return list(json.load(archive.extractfile("state.json"))["runs"])
