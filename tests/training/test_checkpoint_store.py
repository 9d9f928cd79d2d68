"""The worker's copy of a job's epoch checkpoints in the shared store (S3,
SeaweedFS here): only complete checkpoints go up, one object each; the bucket
follows the Trainer's rotation; a worker on another data dir fetches them; a
hostile object in the bucket is refused; a link in a checkpoint never carries a
host file into the bucket. tests/queue/test_checkpoint_store.py runs a whole
job across two workers."""

import io
import json
import os
import tarfile

import pytest

from training.checkpoint_store import (CheckpointMirror, checkpoint_key, forget_checkpoints, restore_checkpoints,
                                       stored_checkpoints)
from trainers.hf_callback import last_checkpoint
from uploads.bundles import BundleRejected

from ..conftest import new_key
from ..seaweedfs import seaweed_for_module, worker_storage
from .flow import add_dataset, start_job

BUCKET = "checkpoints"
JOB = "job_0123456789abcdef"


@pytest.fixture(scope="module")
def seaweed():
    yield from seaweed_for_module(BUCKET)


@pytest.fixture
def s3(seaweed, tmp_path, monkeypatch, request):
    """(settings, storage) of a worker on its own data dir, a bucket prefix per test."""
    return worker_storage(seaweed, BUCKET, str(tmp_path / "worker-a"), f"{request.node.name}/", monkeypatch)


def checkpoints_of(data_dir: str) -> str:
    folder = os.path.join(data_dir, "training", JOB, "checkpoints")
    os.makedirs(folder, exist_ok=True)
    return folder


def save(checkpoint_dir: str, step: int, best: int | None = None, state: bool = True, extra: tuple = ()) -> str:
    """A checkpoint as the Trainer leaves it: weights and optimizer first, its
    state (naming the best checkpoint by absolute path) last."""
    folder = os.path.join(checkpoint_dir, f"checkpoint-{step}")
    os.makedirs(os.path.join(folder, "1_Pooling"), exist_ok=True)
    with open(os.path.join(folder, "adapter_model.safetensors"), "wb") as out:
        out.write(os.urandom(512))
    with open(os.path.join(folder, "1_Pooling", "config.json"), "w") as out:
        out.write('{"pooling": "mean"}')
    if state:
        with open(os.path.join(folder, "trainer_state.json"), "w") as out:
            json.dump({"global_step": step, "best_model_checkpoint": os.path.join(
                checkpoint_dir, f"checkpoint-{best or step}")}, out)
    for name in extra:
        with open(os.path.join(folder, name), "w") as out:
            out.write("{}")
    return folder


def bucket(storage) -> list[str]:
    return sorted(stored_checkpoints(storage, JOB))


def test_only_complete_checkpoints_go_up_one_object_each_and_the_bucket_follows_the_rotation(s3):
    config, storage = s3
    checkpoint_dir = checkpoints_of(config.data_dir)
    mirror = CheckpointMirror(config, storage, JOB, checkpoint_dir, required=("epoch_stats.json",))
    save(checkpoint_dir, 4, state=False)  # being written: weights, no state yet
    mirror.sync()
    assert bucket(storage) == []

    with open(os.path.join(checkpoint_dir, "checkpoint-4", "trainer_state.json"), "w") as out:
        out.write('{"global_step": 4, "best_mod')  # half of it
    mirror.sync()
    assert bucket(storage) == []

    save(checkpoint_dir, 4)  # its state written, the callback's file not yet
    mirror.sync()
    assert bucket(storage) == []

    save(checkpoint_dir, 4, extra=("epoch_stats.json",))
    mirror.sync()
    assert bucket(storage) == ["checkpoint-4"]
    assert storage.list_keys(storage.named(f"training/{JOB}/")) == [checkpoint_key(storage, JOB, "checkpoint-4")]

    # Epoch 2 is worse than epoch 1: the Trainer keeps both (the best, the newest).
    save(checkpoint_dir, 8, best=4, extra=("epoch_stats.json",))
    mirror.sync()
    assert bucket(storage) == ["checkpoint-4", "checkpoint-8"]
    # Epoch 3 is worse than epoch 1 too: the Trainer rotates epoch 2 out, and so does the bucket.
    os.rename(os.path.join(checkpoint_dir, "checkpoint-8"), os.path.join(checkpoint_dir, ".rotated"))
    save(checkpoint_dir, 12, best=4, extra=("epoch_stats.json",))
    mirror.sync()
    assert bucket(storage) == ["checkpoint-12", "checkpoint-4"]

    # A worker that starts over lists the bucket again rather than uploading twice.
    uploaded = {name: storage.client.head_object(Bucket=BUCKET, Key=key)["ETag"]
                for name, key in stored_checkpoints(storage, JOB).items()}
    CheckpointMirror(config, storage, JOB, checkpoint_dir, required=("epoch_stats.json",)).sync()
    assert {name: storage.client.head_object(Bucket=BUCKET, Key=key)["ETag"]
            for name, key in stored_checkpoints(storage, JOB).items()} == uploaded

    forget_checkpoints(storage, JOB)
    assert bucket(storage) == []


def test_a_worker_on_another_data_dir_fetches_the_newest_and_resumes_from_it(s3, tmp_path):
    config, storage = s3
    checkpoint_dir = checkpoints_of(config.data_dir)
    save(checkpoint_dir, 3)
    save(checkpoint_dir, 6, best=3)
    CheckpointMirror(config, storage, JOB, checkpoint_dir).sync()

    other = checkpoints_of(str(tmp_path / "worker-b"))
    assert restore_checkpoints(config, storage, JOB, other) == ["checkpoint-3", "checkpoint-6"]
    assert last_checkpoint(other) == os.path.join(other, "checkpoint-6")
    for name in ("checkpoint-3", "checkpoint-6"):
        for file in ("adapter_model.safetensors", os.path.join("1_Pooling", "config.json")):
            with open(os.path.join(checkpoint_dir, name, file), "rb") as mine, \
                    open(os.path.join(other, name, file), "rb") as fetched:
                assert mine.read() == fetched.read()
    with open(os.path.join(other, "checkpoint-6", "trainer_state.json")) as state:
        assert json.load(state)["best_model_checkpoint"] == os.path.join(other, "checkpoint-3")  # this worker's

    # The worker that has the newest fetches nothing.
    assert restore_checkpoints(config, storage, JOB, checkpoint_dir) == []
    forget_checkpoints(storage, JOB)


def test_a_link_in_a_checkpoint_never_carries_a_host_file_into_the_bucket(s3, tmp_path):
    config, storage = s3
    checkpoint_dir = checkpoints_of(config.data_dir)
    folder = save(checkpoint_dir, 5)
    secret = tmp_path / "host-secret"
    secret.write_text("the service's own file")
    os.symlink(secret, os.path.join(folder, "optimizer.pt"))
    os.symlink(tmp_path, os.path.join(folder, "elsewhere"))
    # A newer one whose state is a FIFO (opening it would wait forever) or a link is no checkpoint.
    os.mkfifo(os.path.join(save(checkpoint_dir, 6, state=False), "trainer_state.json"))
    os.symlink(os.path.join(folder, "trainer_state.json"),
               os.path.join(save(checkpoint_dir, 7, state=False), "trainer_state.json"))
    CheckpointMirror(config, storage, JOB, checkpoint_dir).sync()
    assert bucket(storage) == ["checkpoint-5"]

    other = checkpoints_of(str(tmp_path / "worker-b"))
    assert restore_checkpoints(config, storage, JOB, other) == ["checkpoint-5"]
    assert sorted(os.listdir(os.path.join(other, "checkpoint-5"))) == [
        "1_Pooling", "adapter_model.safetensors", "trainer_state.json"]
    forget_checkpoints(storage, JOB)


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        for member, body in members:
            member.size = len(body)
            archive.addfile(member, io.BytesIO(body))
    return data.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member


@pytest.mark.parametrize("hostile", [
    _member("../../../escaped"),
    _member("/tmp/absolute-escape"),
    _member("optimizer.pt", tarfile.SYMTYPE, "/etc/passwd"),
    _member("optimizer.pt", tarfile.LNKTYPE, "/etc/passwd"),
    _member("fifo", tarfile.FIFOTYPE),
], ids=["dot-dot", "absolute", "symlink", "hardlink", "fifo"])
def test_a_hostile_checkpoint_in_the_bucket_is_refused_and_nothing_is_written(s3, tmp_path, hostile):
    config, storage = s3
    state = json.dumps({"global_step": 9}).encode()
    body = b"" if hostile.type in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE) else b"owned"
    storage.client.put_object(Bucket=BUCKET, Key=checkpoint_key(storage, JOB, "checkpoint-9"),
                              Body=_tar((_member("trainer_state.json"), state), (hostile, body)))
    other = checkpoints_of(str(tmp_path / "worker-b"))
    with pytest.raises(BundleRejected):
        restore_checkpoints(config, storage, JOB, other)
    assert os.listdir(other) == []
    assert not os.path.exists("/tmp/absolute-escape")
    assert not any("escaped" in name for _root, _dirs, files in os.walk(tmp_path) for name in files)
    forget_checkpoints(storage, JOB)


def test_cancelling_a_queued_job_deletes_its_checkpoints_and_another_account_cannot(make_app, s3, tiny_model_dir,
                                                                                    tmp_path):
    """A job queued again after its worker died has checkpoints in the bucket and
    no runner to end it: the cancel deletes them. Another account's cancel is a
    404 and deletes nothing."""
    config, storage = s3
    shared = {"STORAGE": "s3", "S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": config.s3_endpoint_url,
              "S3_REGION": "us-east-1", "S3_PREFIX": config.s3_prefix}
    app = make_app(**shared, TRAINER=True, TRAINING_POLL_S=0.1, MODEL_DIR=tiny_model_dir,
                   DATA_DIR=str(tmp_path / "web"))
    client, alice, mallory = app.test_client(), {"x-api-key": new_key(app, "alice")}, {
        "x-api-key": new_key(app, "mallory")}
    rows = "".join(json.dumps({"prompt": f"Item {i} is", "completion": f" number {i}."}) + "\n" for i in range(8))
    dataset = add_dataset(client, alice, rows)
    app.extensions["training"].stop()  # no runner here: the job stays queued, as one whose worker died
    job = start_job(client, alice, "writer", task="text-generation", dataset_id=dataset["id"],
                    base_model="gpt2-large", hyperparameters={"epochs": 2})
    key = checkpoint_key(storage, job["id"], "checkpoint-3")
    storage.client.put_object(Bucket=BUCKET, Key=key, Body=b"a checkpoint saved by a worker that died")

    refused = client.post(f"/jobs/{job['id']}/cancel", headers=mallory)
    assert refused.status_code == 404, refused.json
    assert sorted(stored_checkpoints(storage, job["id"])) == ["checkpoint-3"]

    cancelled = client.post(f"/jobs/{job['id']}/cancel", headers=alice)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled", cancelled.json
    assert stored_checkpoints(storage, job["id"]) == {}
