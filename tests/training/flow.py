"""Driving datasets and training jobs over HTTP, as a user does."""

import csv
import io
import time


def until(condition, timeout_s: float) -> None:
    """Poll `condition` (an HTTP request) every 50 ms: a training child shares the
    two cores with the test, which must not spin."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def iris_csv() -> str:
    from sklearn.datasets import load_iris

    iris = load_iris()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
    for features, target in zip(iris.data, iris.target):
        writer.writerow([*features, f"Iris-{iris.target_names[target]}"])
    return out.getvalue()


def add_dataset(client, headers, data: str, timeout_s: float = 60, **fields) -> dict:
    """POST /datasets and wait until it is parsed (ready or failed)."""
    created = client.post("/datasets", json={"data": data, **fields}, headers=headers)
    assert created.status_code == 201, created.json
    return wait_dataset(client, headers, created.json["id"], timeout_s)


def wait_dataset(client, headers, dataset_id: str, timeout_s: float = 60) -> dict:
    state = {}

    def parsed():
        state.update(client.get(f"/datasets/{dataset_id}", headers=headers).json)
        return state["status"] in ("ready", "failed")

    until(parsed, timeout_s)
    return state


def start_job(client, headers, model: str, **body) -> dict:
    started = client.post(f"/models/{model}/train", json=body, headers=headers)
    assert started.status_code == 202, started.json
    assert started.headers["Location"] == f"/jobs/{started.json['id']}"
    return started.json


def wait_job(client, headers, job_id: str, statuses=("succeeded", "failed", "cancelled"), timeout_s: float = 240,
             seen: list | None = None) -> dict:
    """Poll the job until its status is one of `statuses`; every state seen goes into `seen`."""
    state = {}

    def reached():
        state.clear()
        state.update(client.get(f"/jobs/{job_id}", headers=headers).json)
        if seen is not None:
            seen.append(dict(state))
        return state["status"] in statuses

    until(reached, timeout_s)
    return state


def version_files_dir(app, model: str, number: int) -> str:
    """The folder of a published version's files, as the server keeps it (to load
    with the library itself and check what the job reported)."""
    from sqlalchemy import select

    from core.tables import ModelVersion, UserModel
    from uploads.serving import version_dirs
    from web.settings import settings_of

    with app.extensions["db"].sessions() as session:
        version_id = session.scalar(select(ModelVersion.id).join(UserModel, ModelVersion.model_id == UserModel.id)
                                    .where(UserModel.name == model, ModelVersion.number == number))
    return version_dirs(settings_of(app).data_dir, version_id)[0]
