"""A job's life across crashes, cancels and restarts, with a real training
process: LoRA on the tiny causal LM standing in for gpt2-large (MODEL_DIR)."""

import json
import os
import signal

import pytest

from web.settings import settings_of

from .flow import add_dataset, start_job, until, wait_job

# Long enough to be caught mid-run: every epoch is a checkpoint.
MANY_EPOCHS = {"epochs": 60, "batch_size": 4, "learning_rate": 1e-3, "max_length": 32}


def prompt_completion_jsonl(rows: int = 24) -> str:
    return "".join(json.dumps({"prompt": f"Item {i} is", "completion": f" number {i}."}) + "\n" for i in range(rows))


@pytest.fixture
def runner_config(tiny_model_dir):
    return {"TRAINER": True, "TRAINING_POLL_S": 0.1, "MODEL_DIR": tiny_model_dir, "TRAINING_LEASE_S": 3.0}


def _job_body(dataset_id: str, **hyperparameters) -> dict:
    return {"task": "text-generation", "dataset_id": dataset_id, "base_model": "gpt2-large",
            "hyperparameters": {**MANY_EPOCHS, **hyperparameters}}


def _running_with_epochs(client, headers, job_id: str, at_least: int = 1) -> dict:
    state = {}

    def reached():
        state.update(client.get(f"/jobs/{job_id}", headers=headers).json)
        assert state["status"] in ("queued", "running"), state
        return state["status"] == "running" and len(state["epochs"]) >= at_least

    until(reached, 180)
    return state


def _checkpointed(running: dict) -> list[dict]:
    """The epochs of a running job whose checkpoints are surely saved: all but the
    last reported, as an epoch is reported before its checkpoint is written (a
    kill between the two trains that epoch again, and its new report replaces the first)."""
    return running["epochs"][:-1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped) is dead too.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_a_killed_training_process_resumes_from_its_checkpoint_and_finishes_once(client_for, runner_config):
    api = client_for(**runner_config)
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, prompt_completion_jsonl())
    job = start_job(client, headers, "writer", **_job_body(dataset["id"], epochs=12))
    before = _running_with_epochs(client, headers, job["id"], at_least=2)
    pid = api.app.extensions["training"].child_pid(job["id"])
    os.kill(pid, signal.SIGKILL)

    done = wait_job(client, headers, job["id"])
    assert done["status"] == "succeeded", done["message"]
    assert done["attempts"] == 2
    assert [entry["epoch"] for entry in done["epochs"]] == list(range(1, 13))  # each epoch once
    # The epochs finished before the kill were not trained again: their records are the first attempt's.
    for entry in _checkpointed(before):
        assert done["epochs"][entry["epoch"] - 1] == entry
    log = client.get(f"/jobs/{job['id']}/log", headers=headers).json["log"]
    assert "killed by signal 9" in log and "resuming from the last epoch checkpoint" in log
    versions = client.get("/models/writer/versions", headers=headers).json
    assert [(v["version"], v["job_id"]) for v in versions] == [(1, job["id"])]


def test_cancel_stops_a_running_job_and_makes_no_version(client_for, runner_config):
    api = client_for(**runner_config)
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, prompt_completion_jsonl())
    job = start_job(client, headers, "writer", **_job_body(dataset["id"]))
    _running_with_epochs(client, headers, job["id"])
    pid = api.app.extensions["training"].child_pid(job["id"])
    # INFER_TRAINING_NICE: requests served beside the job come first.
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)

    assert client.post(f"/jobs/{job['id']}/cancel", headers=headers).status_code == 200
    done = wait_job(client, headers, job["id"], timeout_s=30)
    assert done["status"] == "cancelled"
    assert len(done["epochs"]) < MANY_EPOCHS["epochs"]
    assert not _alive(pid)
    assert client.get("/models/writer/versions", headers=headers).json == []
    assert not os.path.exists(os.path.join(settings_of(api.app).data_dir, "training", job["id"]))  # checkpoints gone


def test_a_job_survives_a_restart_of_the_service_and_resumes_elsewhere(make_app, client_for, runner_config):
    first = client_for(**runner_config)
    client, headers = first.client, first.headers
    dataset = add_dataset(client, headers, prompt_completion_jsonl())
    job = start_job(client, headers, "writer", **_job_body(dataset["id"], epochs=10))
    before = _running_with_epochs(client, headers, job["id"], at_least=2)
    first.app.extensions["training"].stop()  # the process stops: its job goes back to the queue

    stopped = client.get(f"/jobs/{job['id']}", headers=headers).json
    assert stopped["status"] == "queued" and "resumes" in stopped["message"]
    second = make_app(**runner_config)  # a new process on the same database and data dir
    done = wait_job(second.test_client(), headers, job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 2
    assert [entry["epoch"] for entry in done["epochs"]] == list(range(1, 11))
    for entry in _checkpointed(before):
        assert done["epochs"][entry["epoch"] - 1] == entry


def test_two_runners_on_one_database_train_a_job_once(make_app, client_for, runner_config):
    first = client_for(**runner_config)
    make_app(**runner_config)  # a second worker process, looking for the same work
    client, headers = first.client, first.headers
    dataset = add_dataset(client, headers, prompt_completion_jsonl(8))
    jobs = [start_job(client, headers, "writer", **_job_body(dataset["id"], epochs=2))["id"] for _ in range(3)]
    done = [wait_job(client, headers, job_id) for job_id in jobs]
    assert [job["status"] for job in done] == ["succeeded"] * 3
    assert [job["attempts"] for job in done] == [1, 1, 1]
    versions = client.get("/models/writer/versions", headers=headers).json
    assert sorted(v["job_id"] for v in versions) == sorted(jobs) and len(versions) == 3


def test_a_failed_job_says_why_and_the_model_keeps_serving_its_version(client_for, runner_config):
    api = client_for(**runner_config)
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, prompt_completion_jsonl(8))
    good = wait_job(client, headers, start_job(client, headers, "writer", **_job_body(dataset["id"], epochs=1))["id"])
    assert good["status"] == "succeeded"
    bad = wait_job(client, headers, start_job(client, headers, "writer", **_job_body(
        dataset["id"], epochs=1, target_modules=["no_such_projection"]))["id"])
    assert bad["status"] == "failed" and "no_such_projection" in bad["message"]
    log = client.get(f"/jobs/{bad['id']}/log", headers=headers).json
    assert log["status"] == "failed" and "no_such_projection" in log["log"]
    versions = client.get("/models/writer/versions", headers=headers).json
    assert [(v["version"], v["serving"]) for v in versions] == [(1, True)]
    generated = client.post("/text-generation", json={"text": "Item 3 is", "model": "writer", "max_length": 4},
                            headers=headers)
    assert generated.status_code == 200, generated.json
