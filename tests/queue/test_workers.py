"""Two worker processes (`flask --app wsgi worker`) on Redis and one PostgreSQL
database, the web app only submitting: mixed work all done, each piece once;
a worker killed with -9, or stopped, mid-job: the other finishes the job."""

import json
import os
import signal
from collections import Counter

import pytest
from sqlalchemy import select

from core.tables import ModelVersion, Prediction
from training.paths import job_dir

from ..conftest import ApiClient
from ..training.flow import add_dataset, iris_csv, start_job, until, wait_dataset, wait_job
from ..uploads.helpers import inference_zip, put_local, upload_url, wait_built
from .workers import start_workers, stop_workers

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def cluster(postgres, redis_url, make_app, tiny_model_dir, tmp_path):
    """(an ApiClient of the web app, start(count, **settings) -> new workers). The
    workers share its database and data dir, as on one host (checkpoints are
    found), with short leases."""
    config = {"QUEUE_URL": redis_url, "DATABASE_URL": postgres.new_database(), "DATA_DIR": str(tmp_path / "data"),
              "MODEL_DIR": tiny_model_dir, "QUEUE_SWEEP_S": 0.5, "TRAINING_LEASE_S": 3.0, "BUILD_LEASE_S": 3.0,
              "PREDICTION_LEASE_S": 3.0, "TORCH_THREADS": 1, "ACCOUNT_MAX_ACTIVE_JOBS": 10}
    api = ApiClient(make_app(**config))
    started = []

    def workers(count: int, **overrides):
        new = start_workers({**config, **overrides}, str(tmp_path), count, redis_url, len(started))
        started.extend(new)
        return new

    yield api, workers
    stop_workers(started)


def _claims(workers, table: str) -> Counter:
    return Counter(row_id for worker in workers for row_id in worker.claims(table))


def test_twenty_jobs_of_mixed_kinds_all_finish_each_exactly_once(cluster):
    api, start = cluster
    client, headers = api.client, api.headers
    workers = start(2)

    # 4 builds and 6 dataset parses, submitted together.
    for number in range(4):
        assert put_local(client, upload_url(client, headers, f"coder{number}"),
                         inference_zip(str(number + 1))).status_code == 200
    iris = client.post("/datasets", json={"data": iris_csv(), "name": "iris"}, headers=headers).json
    texts = [client.post("/datasets", json={"data": "text,label\n" + "".join(
        f"good {i} {n},pos\nbad {i} {n},neg\n" for i in range(5))}, headers=headers).json for n in range(5)]
    # 4 training jobs once their dataset is ready, 6 predictions once their model is built.
    assert wait_dataset(client, headers, iris["id"])["status"] == "ready"
    jobs = [start_job(client, headers, f"iris{n}", task="tabular", dataset_id=iris["id"],
                      hyperparameters={"n_estimators": 5})["id"] for n in range(4)]
    assert wait_built(client, headers, "coder0")["build_status"] == "success"
    predictions = []
    for n in range(6):
        body = {"model": "coder0", "numbers": [1, 2, n]}
        created = client.post("/custom", json=body, headers={**headers, **ASYNC})
        assert created.status_code == 202, created.json
        predictions.append((created.json["id"], body))

    for number in range(4):
        built = wait_built(client, headers, f"coder{number}")
        assert built["build_status"] == "success", built
        assert len(client.get(f"/models/coder{number}/versions", headers=headers).json) == 1
    for dataset in [iris, *texts]:
        assert wait_dataset(client, headers, dataset["id"])["status"] == "ready"
    for n, job_id in enumerate(jobs):
        done = wait_job(client, headers, job_id, timeout_s=120)
        assert done["status"] == "succeeded" and done["attempts"] == 1, done["message"]
        assert [v["version"] for v in client.get(f"/models/iris{n}/versions", headers=headers).json] == [1]
    for prediction_id, body in predictions:
        until(lambda: client.get(f"/predictions/{prediction_id}", headers=headers).json["completed_at"], 60)
        done = client.get(f"/predictions/{prediction_id}", headers=headers).json
        assert done["status"] == "succeeded", done
        assert done["output"] == client.post("/custom", json=body, headers=headers).json  # the synchronous answer
    with api.app.extensions["db"].sessions() as session:
        attempts = session.scalars(select(Prediction.attempts).where(
            Prediction.id.in_([prediction_id for prediction_id, _ in predictions]))).all()
    assert attempts == [1] * 6

    # Each piece of work claimed once in all, whatever the messages were, and
    # all by the workers: the web process runs no loop, it only submits.
    with api.app.extensions["db"].sessions() as session:
        version_ids = session.scalars(select(ModelVersion.id).where(ModelVersion.source != "training")).all()
    assert len(version_ids) == 4
    claims = {"model_versions": _claims(workers, "model_versions"), "datasets": _claims(workers, "datasets"),
              "training_jobs": _claims(workers, "training_jobs")}
    assert claims["model_versions"] == Counter({str(version_id): 1 for version_id in version_ids})
    assert claims["datasets"] == Counter({dataset["id"]: 1 for dataset in [iris, *texts]})
    assert claims["training_jobs"] == Counter({job_id: 1 for job_id in jobs})
    assert all(sum((worker.claims(table) for table in claims), []) for worker in workers)  # both worked


# Long enough to be caught mid-run: every epoch is a checkpoint.
MANY_EPOCHS = {"epochs": 6, "batch_size": 4, "learning_rate": 1e-3, "max_length": 32}


def saved_epochs(checkpoint_dir: str) -> int:
    """How many epochs the newest complete checkpoint there holds (0 for none):
    an epoch is reported before its checkpoint is written, and a process killed
    in between trains that epoch again."""
    done = 0
    for name in os.listdir(checkpoint_dir) if os.path.isdir(checkpoint_dir) else []:
        try:
            with open(os.path.join(checkpoint_dir, name, "trainer_state.json")) as state:
                done = max(done, round(json.load(state)["epoch"]))
        except (OSError, ValueError, KeyError):
            continue  # being written
    return done


def _training_caught_running(api, workers, epochs_done: int, data_dir: str | None = None) -> tuple:
    """A LoRA job (the tiny causal LM) running with `epochs_done` epochs done
    (reported, and saved in the data dir's checkpoints when given): (its id,
    what GET /jobs said then, the worker running it, the other worker)."""
    client, headers = api.client, api.headers
    rows = "".join(json.dumps({"prompt": f"Item {i} is", "completion": f" number {i}."}) + "\n" for i in range(24))
    dataset = add_dataset(client, headers, rows)
    job_id = start_job(client, headers, "writer", task="text-generation", dataset_id=dataset["id"],
                       base_model="gpt2-large", hyperparameters=MANY_EPOCHS)["id"]
    state = {}

    def running():
        state.update(client.get(f"/jobs/{job_id}", headers=headers).json)
        assert state["status"] in ("queued", "running"), state
        return (state["status"] == "running" and len(state["epochs"]) >= epochs_done
                and any(job_id in worker.claims("training_jobs") for worker in workers)
                and (data_dir is None or saved_epochs(job_dir(data_dir, job_id) + "/checkpoints") >= epochs_done))

    until(running, 180)
    (runner,) = [worker for worker in workers if job_id in worker.claims("training_jobs")]
    (other,) = [worker for worker in workers if worker is not runner]
    return job_id, dict(state), runner, other


def _finished_on(api, job_id: str, before: dict, worker) -> dict:
    done = wait_job(api.client, api.headers, job_id, timeout_s=180)
    assert done["status"] == "succeeded", done["message"]
    assert done["attempts"] == 2
    epochs = [entry["epoch"] for entry in done["epochs"]]
    assert epochs == list(range(1, MANY_EPOCHS["epochs"] + 1))  # each once, to the end
    recorded = {entry["epoch"]: entry for entry in done["epochs"]}
    for entry in before["epochs"]:  # not trained again: resumed from the checkpoint in the shared data dir
        assert recorded[entry["epoch"]] == entry
    assert worker.claims("training_jobs") == [job_id]
    versions = api.client.get("/models/writer/versions", headers=api.headers).json
    assert [(v["version"], v["job_id"]) for v in versions] == [(1, job_id)]
    return done


def test_a_worker_killed_with_minus_9_mid_job_loses_nothing_the_other_finishes_it(cluster):
    api, start = cluster
    job_id, before, victim, survivor = _training_caught_running(api, start(2), epochs_done=1,
                                                                data_dir=api.app.extensions["settings"].data_dir)
    os.kill(victim.pid, signal.SIGKILL)
    victim.process.wait()
    # Its lease (3 s here) runs out; the survivor's sweep sends the job again
    # and resumes from the saved epoch (an epoch past it is trained again).
    _finished_on(api, job_id, before, survivor)
    log = api.client.get(f"/jobs/{job_id}/log", headers=api.headers).json["log"]
    assert "resuming from the last epoch checkpoint" in log


def test_a_worker_stopped_with_sigterm_hands_its_job_back_at_once(cluster):
    api, start = cluster
    # Leases longer than the test: the job can only move on by being handed back.
    job_id, before, stopped, other = _training_caught_running(api, start(2, TRAINING_LEASE_S=3600), epochs_done=0)
    stopped.process.send_signal(signal.SIGTERM)
    assert stopped.process.wait(timeout=60) == 0
    assert "The service stopped; the job resumes" in api.client.get(
        f"/jobs/{job_id}/log", headers=api.headers).json["log"]
    _finished_on(api, job_id, before, other)
