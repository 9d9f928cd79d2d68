"""A search's resume state in the shared store (S3, SeaweedFS here;
training/search_store.py): the worker copies state.json and the best whole-set
run's output as the search goes, keeps only what a resume needs, and a worker on
another data dir fetches them, so a search it takes over does not train its
finished runs again; a link never carries a host file into the bucket, a hostile
object is refused, and the objects go when the job ends."""

import io
import json
import os
import tarfile

import pytest

from training.checkpoint_store import forget_checkpoints
from training.search_store import SearchMirror, restore_search, search_prefix, stored_search
from uploads.bundles import BundleRejected

from ..conftest import ApiClient
from ..seaweedfs import seaweed_for_module, worker_storage
from .flow import add_dataset, start_job, until, wait_job
from .test_search import linear_csv, search_body

BUCKET = "searches"
JOB = "job_0123456789abcdef"


@pytest.fixture(scope="module")
def seaweed():
    yield from seaweed_for_module(BUCKET)


@pytest.fixture
def s3(seaweed, tmp_path, monkeypatch, request):
    """(settings, storage) of a worker on its own data dir, a bucket prefix per test."""
    return worker_storage(seaweed, BUCKET, str(tmp_path / "worker-a"), f"{request.node.name}/", monkeypatch)


def search_of(data_dir: str) -> str:
    folder = os.path.join(data_dir, "training", JOB, "search")
    os.makedirs(folder, exist_ok=True)
    return folder


def finish(search_dir: str, runs: dict, trial: int | None = None, ok: bool = True) -> None:
    """What the child leaves after a run: the whole-set run's output, then the state naming it."""
    if trial is not None:
        runs[f"{trial}@1.000000"] = {"ok": ok, "score": trial / 10} if ok else {"ok": False, "failed": "no"}
        if ok:
            output = os.path.join(search_dir, f"trial-{trial}", "share-1.000000", "output")
            os.makedirs(output, exist_ok=True)
            with open(os.path.join(output, "model.joblib"), "w") as out:
                out.write(f"trial {trial}'s model")
    with open(os.path.join(search_dir, "state.json"), "w") as out:
        json.dump({"started": 1.0, "runs": runs}, out)


def bucket(storage) -> tuple[list[int], list[int]]:
    states, trials = stored_search(storage, JOB)
    return sorted(states), sorted(trials)


def test_the_bucket_keeps_the_newest_state_and_its_best_output_and_another_worker_fetches_them(s3, tmp_path):
    config, storage = s3
    search_dir = search_of(config.data_dir)
    mirror = SearchMirror(config, storage, JOB, search_dir)
    finish(search_dir, {})  # the search started: no run finished
    mirror.sync()
    assert bucket(storage) == ([], [])

    runs = {}
    finish(search_dir, runs, 1)
    mirror.sync()
    assert bucket(storage) == ([1], [1])
    finish(search_dir, runs, 2, ok=False)  # failed: nothing to publish
    mirror.sync()
    assert bucket(storage) == ([2], [1])
    # Trial 3 is better: the child deletes trial 1's output, and the bucket follows once state 3 is there.
    finish(search_dir, runs, 3)
    os.rename(os.path.join(search_dir, "trial-1"), os.path.join(search_dir, ".gone"))
    mirror.sync()
    assert bucket(storage) == ([3], [3])

    # A worker that starts over lists the bucket rather than uploading twice.
    key = f"{search_prefix(storage, JOB)}trial-3.tar"
    etag = storage.client.head_object(Bucket=BUCKET, Key=key)["ETag"]
    SearchMirror(config, storage, JOB, search_dir).sync()
    assert storage.client.head_object(Bucket=BUCKET, Key=key)["ETag"] == etag

    other = search_of(str(tmp_path / "worker-b"))
    os.makedirs(os.path.join(other, "trial-9", "share-1.000000", "output"))  # a stale attempt of its own
    assert restore_search(config, storage, JOB, other) == 3
    with open(os.path.join(other, "state.json")) as state:
        assert json.load(state)["runs"] == runs
    with open(os.path.join(other, "trial-3", "share-1.000000", "output", "model.joblib")) as model:
        assert model.read() == "trial 3's model"
    assert sorted(os.listdir(other)) == ["state.json", "trial-3"]
    # As far as the bucket: nothing fetched, on either worker.
    assert restore_search(config, storage, JOB, other) == 0
    assert restore_search(config, storage, JOB, search_dir) == 0

    # A better run whose output is past the bundle limit: the bucket stays at state 3 and its best.
    finish(search_dir, runs, 4)
    with open(os.path.join(search_dir, "trial-4", "share-1.000000", "output", "weights.bin"), "wb") as out:
        out.write(os.urandom(4096))
    small = config.with_overrides({"UPLOAD_MAX_UNCOMPRESSED_BYTES": 2048})
    SearchMirror(small, storage, JOB, search_dir).sync()
    assert bucket(storage) == ([3], [3])

    # The job ended: nothing of it stays under training/<job id>/.
    forget_checkpoints(storage, JOB)
    assert storage.list_keys(storage.named(f"training/{JOB}/")) == []


def test_a_link_in_the_search_folder_never_carries_a_host_file_into_the_bucket(s3, tmp_path):
    config, storage = s3
    search_dir = search_of(config.data_dir)
    secret = tmp_path / "host-secret"
    secret.write_text(json.dumps({"runs": {"1@1.000000": {"ok": True}}}))
    os.symlink(secret, os.path.join(search_dir, "state.json"))
    SearchMirror(config, storage, JOB, search_dir).sync()
    assert bucket(storage) == ([], [])

    os.remove(os.path.join(search_dir, "state.json"))
    finish(search_dir, {}, 1)
    output = os.path.join(search_dir, "trial-1", "share-1.000000", "output")
    os.symlink(secret, os.path.join(output, "config.json"))
    SearchMirror(config, storage, JOB, search_dir).sync()
    assert bucket(storage) == ([1], [1])
    other = search_of(str(tmp_path / "worker-b"))
    assert restore_search(config, storage, JOB, other) == 1
    assert os.listdir(os.path.join(other, "trial-1", "share-1.000000", "output")) == ["model.joblib"]


def test_a_hostile_search_object_in_the_bucket_is_refused_and_nothing_is_written(s3, tmp_path):
    config, storage = s3
    state = json.dumps({"runs": {"1@1.000000": {"ok": True}}}).encode()
    escape = tarfile.TarInfo("../../../escaped")
    escape.size = 5
    with io.BytesIO() as body:
        with tarfile.open(fileobj=body, mode="w") as archive:
            member = tarfile.TarInfo("state.json")
            member.size = len(state)
            archive.addfile(member, io.BytesIO(state))
            archive.addfile(escape, io.BytesIO(b"owned"))
        storage.client.put_object(Bucket=BUCKET, Key=f"{search_prefix(storage, JOB)}state-1.tar",
                                  Body=body.getvalue())
    other = search_of(str(tmp_path / "worker-b"))
    with pytest.raises(BundleRejected):
        restore_search(config, storage, JOB, other)
    assert os.listdir(other) == []
    assert not any("escaped" in name for _root, _dirs, files in os.walk(tmp_path) for name in files)


def test_a_search_taken_over_on_another_data_dir_does_not_train_its_finished_trials_again(make_app, s3, tmp_path):
    """Worker A runs a search and stops (its job handed back) once two trials
    are in the bucket; worker B, on a data dir that never held the job, fetches
    the search's state and trains only the trials A had not finished. The job's
    objects leave the bucket when it ends."""
    config, storage = s3
    shared = {"STORAGE": "s3", "S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": config.s3_endpoint_url,
              "S3_REGION": "us-east-1", "S3_PREFIX": config.s3_prefix,
              "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}", "TRAINER": True, "TRAINING_POLL_S": 0.1,
              "TRAINING_SEARCH_MAX_TRIALS": 12, "TRAINING_SEARCH_MAX_TIME_S": 600}
    worker_a = ApiClient(make_app(**shared, DATA_DIR=str(tmp_path / "host-a")))
    client, headers = worker_a.client, worker_a.headers
    dataset = add_dataset(client, headers, linear_csv(), name="linear")
    job = start_job(client, headers, "moved", **search_body(
        dataset["id"], trials=6, space={"estimator": ["random_forest"], "n_estimators": {"min": 200, "max": 400}}))

    def two_runs_in_the_bucket():
        state = client.get(f"/jobs/{job['id']}", headers=headers).json
        assert state["status"] in ("queued", "running"), state["message"]
        states, _trials = stored_search(storage, job["id"])
        return max(states, default=0) >= 2

    until(two_runs_in_the_bucket, 180)
    worker_a.app.extensions["training"].stop()  # its child stopped, the job queued again
    states, trials = stored_search(storage, job["id"])
    assert len(states) == 1 and len(trials) == 1, (states, trials)  # the newest state and its best output
    with io.BytesIO(storage.client.get_object(Bucket=BUCKET, Key=states[max(states)])["Body"].read()) as body:
        with tarfile.open(fileobj=body) as archive:
            finished = sorted(int(key.split("@")[0]) for key in json.load(archive.extractfile("state.json"))["runs"])
    assert len(finished) >= 2

    worker_b = make_app(**shared, DATA_DIR=str(tmp_path / "host-b"))
    done = wait_job(client, headers, job["id"])
    assert done["status"] == "succeeded", done["message"]
    assert done["attempts"] == 2
    assert sorted(trial["trial"] for trial in done["trials"]) == list(range(1, 7))  # each trial once
    assert [trial["status"] for trial in done["trials"]] == ["kept"] * 6
    log = client.get(f"/jobs/{job['id']}/log", headers=headers).json["log"]
    assert f"fetched the search's state from the shared store ({len(finished)} finished runs" in log
    for number in finished:  # trained on worker A only; B read its measures back
        assert log.count(f"trial {number}: regression with random_forest") == 1, number
    assert all(log.count(f"trial {n}: regression with random_forest") >= 1 for n in range(1, 7))
    assert "search: trial" in log and "is the best" in log
    assert not os.path.exists(os.path.join(str(tmp_path / "host-b"), "training", job["id"], "search"))

    predicted = worker_b.test_client().post(
        "/predict", json={"model": "moved", "features": {f"x{i}": 0.5 for i in range(12)}}, headers=headers)
    assert predicted.status_code == 200, predicted.json
    # The job ended: nothing of it stays under training/<job id>/.
    until(lambda: not storage.list_keys(storage.named(f"training/{job['id']}/")), 30)
