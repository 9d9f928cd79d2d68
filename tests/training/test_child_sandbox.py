"""Training and dataset-parse children run in the sandbox: an attacker's
dataset or job, driven over HTTP, cannot reach the service's files, another
account's data, the network or the service's environment; a child over its
memory limit fails its dataset or job saying so; and the victim is served
throughout.

A dataset cannot run code of its own, so to see what a subverted child could
reach, the probe of child_probe.py takes the child's place: the runner starts
it with everything it gives the real child (the same Job: binds, uid, limits,
environment), and only the command line differs (ChildSandbox.command)."""

import io
import json
import os
import struct
import sys
import uuid
import zipfile
import zlib

import pytest
import requests

from training.child_records import TrainingRequest
from training.sandboxed import PARSE_MODULE, TRAIN_MODULE, ChildSandbox
from web.settings import settings_of

from ..conftest import LiveServer
from .flow import add_dataset, iris_csv, start_job, wait_dataset, wait_job
from .test_hostile_datasets import png_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child_probe.py")
AWS_CANARY = "canary-aws-" + uuid.uuid4().hex
INFER_CANARY = "canary-infer-" + uuid.uuid4().hex


def _probe_in_place_of(monkeypatch, module: str, targets: dict) -> None:
    """The runner starts the probe where it would start `module`'s child."""
    with open(PROBE) as source:
        probe = source.read()
    original = ChildSandbox.command

    def command(self, child_module, work_dir):
        if child_module != module:
            return original(self, child_module, work_dir)
        return [sys.executable, "-c", probe, json.dumps({**targets, "work_dir": work_dir})]

    monkeypatch.setattr(ChildSandbox, "command", command)


@pytest.fixture
def service(client_for, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_CANARY)
    monkeypatch.setenv("INFER_TEST_CANARY", INFER_CANARY)
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1)
    with LiveServer(api.app) as live:
        yield api, live


def _forbidden(api, live, victim_dataset: str, own_dataset: str | None = None) -> dict:
    """What no child may reach: the service's files, the victim's dataset, the
    service's code, its port. Each file exists on the host: a miss in the
    sandbox means the sandbox hid it."""
    data_dir = settings_of(api.app).data_dir
    victim = os.path.join(data_dir, "datasets", victim_dataset)
    targets = {
        "read": {"data_dir": data_dir, "database": os.path.join(data_dir, "infer.db"),
                 "secret": os.path.join(data_dir, "secret_key"), "victim_source": os.path.join(victim, "source"),
                 "victim_rows": os.path.join(victim, "rows.jsonl"), "jobs_dir": os.path.join(data_dir, "training"),
                 "repository": os.path.join(ROOT, "README.md")},
        "write": {"service_code": "/opt/infer/service/training/pwned.py",
                  "repository_code": os.path.join(ROOT, "training", "pwned.py"),
                  "data_dir": os.path.join(data_dir, "pwned")},
        "connect": {"service": ["127.0.0.1", int(live.url.rsplit(":", 1)[1])]},
    }
    if own_dataset:  # its own dataset, by the host's path: only its mount is there
        targets["read"]["own_dataset_by_host_path"] = os.path.join(data_dir, "datasets", own_dataset, "rows.jsonl")
    for name in ("database", "secret", "victim_source", "victim_rows", "repository"):
        assert os.path.isfile(targets["read"][name]), name
    return targets


def _assert_confined(found: dict, api, forbidden: dict) -> None:
    for kind in ("read", "write", "connect"):
        for name in forbidden[kind]:
            assert found[f"{kind} {name}"].startswith("blocked"), (kind, name, found[f"{kind} {name}"])
    assert set(found["secret_env"]) <= {"INFER_TRAINING_EVENTS_FD"}  # the service's: none; the pipe's number
    assert AWS_CANARY not in found["environ_text"] and INFER_CANARY not in found["environ_text"]
    assert len(found["processes"]) <= 3  # a PID namespace of its own: bwrap's init and itself
    if os.geteuid() == 0:  # as root: a uid of its account's own, in the training range
        assert found["uid"] >= settings_of(api.app).training_sandbox_uid_base and 0 not in found["groups"]
    assert not os.path.exists(os.path.join(ROOT, "training", "pwned.py"))
    assert not os.path.exists(forbidden["write"]["data_dir"])


def test_a_parse_child_reaches_nothing_but_its_own_dataset(service, monkeypatch):
    api, live = service
    client = api.client
    victim, attacker = api.headers_for("victim"), api.headers_for("attacker")
    victim_dataset = add_dataset(client, victim, iris_csv())
    assert victim_dataset["status"] == "ready"
    forbidden = _forbidden(api, live, victim_dataset["id"])
    _probe_in_place_of(monkeypatch, PARSE_MODULE, {
        **forbidden, "report": "parse", "own_read": {"upload": "/dataset/source"},
        "own_write": {"folder": "/dataset/probe.txt"}, "list": {"root": "/"}})

    probed = add_dataset(client, attacker, "text,label\na,b\nc,d\n")
    assert probed["status"] == "failed"
    found = json.loads(probed["message"])
    _assert_confined(found, api, forbidden)
    # The control: it ran where the parser runs, its upload readable and its folder writable.
    assert found["own_read upload"] == found["own_write folder"] == "allowed"
    assert "dataset" in found["list root"] and "datasets" not in found["list root"]
    monkeypatch.undo()

    # The victim is served throughout.
    assert requests.get(f"{live.url}/healthz", timeout=10).status_code == 200
    assert add_dataset(client, victim, iris_csv())["status"] == "ready"


def test_a_training_child_reaches_its_own_dataset_and_job_and_nothing_else(service, monkeypatch):
    api, live = service
    client = api.client
    victim, attacker = api.headers_for("victim"), api.headers_for("attacker")
    victim_dataset = add_dataset(client, victim, iris_csv())
    own_dataset = add_dataset(client, attacker, iris_csv())
    assert victim_dataset["status"] == own_dataset["status"] == "ready"
    forbidden = _forbidden(api, live, victim_dataset["id"], own_dataset["id"])
    forbidden["write"]["own_dataset"] = "/datasets/train/rows.jsonl"  # read-only, even to its owner
    _probe_in_place_of(monkeypatch, TRAIN_MODULE, {
        **forbidden, "report": "train", "own_read": {"rows": "/datasets/train/rows.jsonl", "spec": "/job/job.json"},
        "own_write": {"job_folder": "/job/probe.txt"}, "list": {"datasets": "/datasets"}})

    job = wait_job(client, attacker, start_job(client, attacker, "probe", task="tabular",
                                               dataset_id=own_dataset["id"])["id"])
    assert job["status"] == "failed"
    found = json.loads(job["message"])
    _assert_confined(found, api, forbidden)
    assert found["own_read rows"] == found["own_read spec"] == found["own_write job_folder"] == "allowed"
    assert found["list datasets"] == ["train"]
    monkeypatch.undo()

    assert requests.get(f"{live.url}/healthz", timeout=10).status_code == 200
    served = wait_job(client, victim, start_job(client, victim, "iris", task="tabular",
                                                dataset_id=victim_dataset["id"])["id"])
    assert served["status"] == "succeeded", served["message"]


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def blank_rgb_png(width: int, height: int) -> bytes:
    """An RGB PNG of zeros, written row by row: a few hundred kilobytes that decode to 3 x width x height bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(bytes(3 * width + 1)) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_a_dataset_that_decodes_past_the_parse_memory_limit_fails_saying_so(client_for):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, DATASET_PARSE_MEMORY_MB=150, MAX_IMAGE_PIXELS=10**8)
    client = api.client
    victim, attacker = api.headers_for("victim"), api.headers_for("attacker")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("cat/1.png", png_bytes((4, 4)))
        out.writestr("dog/1.png", png_bytes((4, 4)))
        # 81 million pixels (within PIL's bomb guard and the pixel limit): 240 MB decoded, past a 150 MB limit.
        out.writestr("dog/big.png", blank_rgb_png(9_000, 9_000))
    rss_before = _rss_kib()
    created = client.post("/datasets", headers=attacker, content_type="multipart/form-data",
                          data={"file": (io.BytesIO(archive.getvalue()), "bomb.zip")})
    assert created.status_code == 201, created.json
    failed = wait_dataset(client, attacker, created.json["id"])
    assert failed["status"] == "failed"
    assert "INFER_DATASET_PARSE_MEMORY_MB" in failed["message"] and "memory" in failed["message"]
    assert _rss_kib() - rss_before < 100 * 1024  # the decoding happened in the child, not here
    assert client.get("/healthz").status_code == 200
    assert add_dataset(client, victim, iris_csv())["status"] == "ready"


FILL_SHM = "head -c 300000000 /dev/zero > /dev/shm/fill; sleep 60"


def _shell_in_place_of(monkeypatch, module: str, script: str) -> None:
    original = ChildSandbox.command
    monkeypatch.setattr(ChildSandbox, "command", lambda self, child_module, work_dir: (
        ["/bin/sh", "-c", script] if child_module == module else original(self, child_module, work_dir)))


def test_children_over_their_memory_limit_are_stopped_and_fail_saying_so(client_for, monkeypatch):
    """Memory the address-space limit does not see (a tmpfs file): the child's
    control group counts it, and the kernel stops the child."""
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, DATASET_PARSE_MEMORY_MB=64, TRAINING_MEMORY_MB=64,
                     SANDBOX_TMP_MB=512)
    assert api.app.extensions["sandbox"].sandbox.describe()["resource_limits"]["enforcement"].startswith("cgroup")
    client = api.client
    victim, attacker = api.headers_for("victim"), api.headers_for("attacker")
    dataset = add_dataset(client, attacker, iris_csv())
    assert dataset["status"] == "ready"
    _shell_in_place_of(monkeypatch, PARSE_MODULE, FILL_SHM)
    parsed = add_dataset(client, attacker, iris_csv())
    assert parsed["status"] == "failed"
    assert parsed["message"].startswith("The parser went over its memory limit of 64 MiB "
                                        "(INFER_DATASET_PARSE_MEMORY_MB) and was stopped")
    monkeypatch.undo()

    _shell_in_place_of(monkeypatch, TRAIN_MODULE, FILL_SHM)
    job = wait_job(client, attacker, start_job(client, attacker, "hog", task="tabular", dataset_id=dataset["id"])["id"])
    assert job["status"] == "failed" and job["attempts"] == 1  # not retried: it would go over again
    assert job["message"].startswith("The training process went over its memory limit of 64 MiB "
                                     "(INFER_TRAINING_MEMORY_MB) and was stopped")
    monkeypatch.undo()
    assert client.get("/healthz").status_code == 200
    assert add_dataset(client, victim, iris_csv())["status"] == "ready"


def test_links_a_child_leaves_are_never_followed_by_the_service(client_for, monkeypatch):
    """A subverted child can make links in its folder, pointing at host paths it
    cannot see itself; the service, running as root, must not read through them."""
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1)
    client = api.client
    victim, attacker = api.headers_for("victim"), api.headers_for("attacker")
    victim_dataset = add_dataset(client, victim, iris_csv())
    victims_result = os.path.join(settings_of(api.app).data_dir, "datasets", victim_dataset["id"], "parse_result.json")
    own = add_dataset(client, attacker, iris_csv())
    _shell_in_place_of(monkeypatch, PARSE_MODULE, f"ln -s {victims_result} /dataset/parse_result.json")
    linked = add_dataset(client, attacker, iris_csv())
    assert linked["status"] == "failed" and linked["stats"] is None  # not the victim's statistics
    assert "parse_result.json is a link or a special file" in linked["message"]
    monkeypatch.undo()

    result = ('{"event": "result", "result": {"format": "sklearn", "tasks": ["tabular"], "best_epoch": 1, '
              '"metrics": {}, "description": "", "samples_per_second": 1.0}}')
    _shell_in_place_of(monkeypatch, TRAIN_MODULE, f"mkdir -p /job/output; ln -s {victims_result} "
                                                  f"/job/output/model.bin; echo '{result}'")
    job = wait_job(client, attacker, start_job(client, attacker, "linked", task="tabular", dataset_id=own["id"])["id"])
    assert job["status"] == "failed" and "model.bin is a link or a special file" in job["message"]
    assert client.get("/models/linked/versions", headers=attacker).json == []
    assert client.get(f"/datasets/{victim_dataset['id']}", headers=victim).json["status"] == "ready"


def test_a_base_model_from_a_hugging_face_cache_is_readable_through_its_links(make_app, tmp_path, monkeypatch):
    """A cache's snapshot links each file to ../../blobs/<hash>: the job sees the
    snapshot at /models/<key> and the blobs where those links lead, read-only,
    even when the files were written 0600 (the service's umask)."""
    app = make_app()
    children = app.extensions["training"].children
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    blob = repo / "blobs" / "f00d"
    blob.write_text('{"model_type": "tiny"}')
    blob.chmod(0o600)
    (repo / "snapshots" / "abc123" / "config.json").symlink_to("../../blobs/f00d")
    job_folder = tmp_path / "job"
    job_folder.mkdir()
    request = TrainingRequest(
        job_id="job_x", task="text-classification", base_model="tiny-key",
        base_model_dir=str(repo / "snapshots" / "abc123"), base_model_file=None, hyperparameters={},
        dataset_format="text", dataset_dir=None, validation_dataset_dir=None, validation_split=None, torch_threads=1,
        nice=10, memory_mb=0, settings={"MODEL_DIR": "/x"})
    monkeypatch.setattr(ChildSandbox, "command", lambda self, module, work_dir: [
        "/bin/sh", "-c", "cat /models/tiny-key/config.json; echo; touch /models/tiny-key/x 2>/dev/null || echo read-only"])
    read_fd, write_fd = os.pipe()
    try:
        with open(job_folder / "child.out", "wb") as output:
            child = children.start_training(1, str(job_folder), request, write_fd, output)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd) as events:
        seen = events.read()
    child.wait(timeout=60)
    children.stop(child)
    assert seen.split() == ['{"model_type":', '"tiny"}', "read-only"]
    inside = children.child_request(request)
    assert inside.base_model_dir == "/models/tiny-key" and inside.settings["MODEL_DIR"] == "/models"
    assert (inside.nice, inside.autogroup_nice) == (0, 10)  # the sandbox starts it niced


def test_without_a_sandbox_a_dataset_fails_with_the_sandboxs_message_instead_of_parsing_unconfined(client_for):
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1)
    sandbox = api.app.extensions["sandbox"].sandbox
    sandbox.bwrap, sandbox._checked = "/nonexistent/bwrap", False  # as on a host without bubblewrap
    failed = add_dataset(api.client, api.headers, iris_csv())
    assert failed["status"] == "failed" and failed["stats"] is None
    assert failed["message"].startswith("The dataset could not be parsed: ")
    assert "no sandbox is available" in failed["message"]
    folder = os.path.join(settings_of(api.app).data_dir, "datasets", failed["id"])
    assert not os.path.exists(os.path.join(folder, "rows.jsonl"))


def test_with_sandbox_none_the_children_run_as_before(client_for):
    """The documented opt-out: the service's own user, no isolation; datasets
    and jobs work as they did."""
    api = client_for(TRAINER=True, TRAINING_POLL_S=0.1, SANDBOX="none")
    client, headers = api.client, api.headers
    dataset = add_dataset(client, headers, iris_csv())
    assert dataset["status"] == "ready", dataset["message"]
    job = wait_job(client, headers, start_job(client, headers, "iris", task="tabular", dataset_id=dataset["id"])["id"])
    assert job["status"] == "succeeded", job["message"]
    assert job["version"] == 1
