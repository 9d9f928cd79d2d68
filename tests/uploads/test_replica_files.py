"""Two replicas (apps on their own data dirs) sharing one database and one real
S3 store (SeaweedFS): a model built, trained or parsed on one is served or
trained on by the other, which fetches its files from the bucket once, checks
them as an upload, and answers 503s that say what is wrong."""

import io
import os
import shutil
import socket
import tarfile
import threading

import pytest
import requests
from sqlalchemy import select

from core.tables import Account, ModelVersion, UserModel, utcnow
from trainers.tabular import TabularTrainer
from training.paths import dataset_dir
from uploads import bundles
from uploads.archive import tree_bytes
from uploads.serving import cache_key, version_dirs
from uploads.version_bundles import ensure_version_files, store_version_files
from uploads.versions import remove_old_versions
from web.settings import settings_of

from ..conftest import new_key, until
from ..seaweedfs import seaweed_for_module
from ..tasks.test_predict import IRIS_ROW, iris_rows
from ..tiny_models import GO_EMOTIONS
from ..training.flow import add_dataset, iris_csv, start_job, wait_job
from ..training.helpers import make_run
from .helpers import hf_folder_zip, inference_zip, wait_built

BUCKET = "replicas"


@pytest.fixture(scope="module")
def seaweed():
    yield from seaweed_for_module(BUCKET)


@pytest.fixture(scope="module")
def iris_files(tmp_path_factory):
    """A trained iris classifier's files (format, folder), trained once for the module."""
    root = tmp_path_factory.mktemp("iris")
    run = make_run(str(root), TabularTrainer(), iris_rows(), [], "tabular", {"n_estimators": 5}, output_name="files")
    return TabularTrainer().train(run).format, run.output_dir


class Replicas:
    """Replica a and replica b: one database file, one bucket prefix, two data dirs."""

    def __init__(self, make_app, tmp_path, seaweed, prefix, **config):
        self.seaweed, self.tmp_path = seaweed, tmp_path
        self.shared = {"STORAGE": "s3", "S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": seaweed.endpoint,
                       "S3_REGION": "us-east-1", "S3_PREFIX": prefix, "DATABASE_URL": f"sqlite:///{tmp_path}/shared.db"}
        self.make_app = make_app
        self.a = self.replica("a", **config)
        self.b = self.replica("b")
        self.headers = {"x-api-key": new_key(self.a, "alice")}

    def replica(self, name, **config):
        return self.make_app(**{**self.shared, "DATA_DIR": str(self.tmp_path / name), **config})

    def keys(self) -> list[str]:
        listed = self.seaweed.client().list_objects_v2(Bucket=BUCKET, Prefix=self.shared["S3_PREFIX"])
        return sorted(item["Key"].removeprefix(self.shared["S3_PREFIX"]) for item in listed.get("Contents", []))

    def publish(self, name: str, model_format: str, files: str, number: int = 1, store: bool = True) -> int:
        """What a finished build leaves on replica a: the files, the rows, serving, its bundle."""
        app = self.a
        with app.extensions["db"].sessions() as session:
            model = session.scalar(select(UserModel).where(UserModel.name == name))
            if model is None:
                account_id = session.scalar(select(Account.id).where(Account.name == "alice"))
                model = UserModel(account_id=account_id, name=name, tasks=["tabular"])
                session.add(model)
                session.flush()
            version = ModelVersion(model_id=model.id, number=number, status="success", format=model_format,
                                   tasks=["tabular"], upload_expires_at=utcnow(), finished_at=utcnow(),
                                   stored_bytes=tree_bytes(files))
            session.add(version)
            session.flush()
            model.current_version_id = version.id
            session.commit()
            version_id = version.id
        files_dir = version_dirs(settings_of(app).data_dir, version_id)[0]
        shutil.copytree(files, files_dir)
        if store:
            store_version_files(settings_of(app), app.extensions["storage"], version_id, files_dir)
        return version_id


@pytest.fixture
def replicas(make_app, tmp_path, seaweed, monkeypatch, request):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    return lambda **config: Replicas(make_app, tmp_path, seaweed, f"{request.node.name}/", **config)


def predict(app, headers, model):
    return app.test_client().post("/predict", json={"model": model, "features": IRIS_ROW}, headers=headers)


def test_a_model_built_on_a_is_served_by_b_from_the_bucket_and_deleted_everywhere(replicas, tiny_dir):
    group = replicas(BUILDER=True, BUILD_POLL_S=0.2)
    a, b, headers = group.a.test_client(), group.b.test_client(), group.headers
    url = a.post("/upload-url", json={"model_name": "feelings"}, headers=headers).json
    archive = hf_folder_zip(tiny_dir["emotion_classifier"], ["emotion"])
    assert requests.put(url, data=archive, timeout=30).status_code == 200
    assert wait_built(a, headers, "feelings")["build_status"] == "success"
    version_id = _serving_id(group.a, "feelings")
    files_on_b = version_dirs(settings_of(group.b).data_dir, version_id)[0]
    assert group.keys() == [f"versions/{version_id}/files.tar"]  # the uploaded zip went; the built files stay
    assert not os.path.exists(files_on_b)

    on_a = a.post("/emotion", json={"model": "feelings", "text": "what a day"}, headers=headers)
    on_b = b.post("/emotion", json={"model": "feelings", "text": "what a day"}, headers=headers)

    assert on_b.status_code == 200, on_b.json
    assert on_b.json["output"] == on_a.json["output"] and set(on_b.json["output"].split(", ")) <= set(GO_EMOTIONS)
    files_on_a = version_dirs(settings_of(group.a).data_dir, version_id)[0]
    assert sorted(os.listdir(files_on_b)) == sorted(os.listdir(files_on_a))
    download = b.get("/models/feelings/files/config.json", headers=headers)
    assert download.status_code == 200 and b'"emotion"' in download.data

    assert a.delete("/models/feelings", headers=headers).status_code == 200
    gone = b.post("/emotion", json={"model": "feelings", "text": "what a day"}, headers=headers)
    assert gone.status_code == 404 and "'feelings' not found" in gone.json["message"]
    assert group.keys() == []


def test_uploaded_code_built_on_a_gets_its_environment_built_on_b(replicas):
    group = replicas(BUILDER=True, BUILD_POLL_S=0.2)
    a, b, headers = group.a.test_client(), group.b.test_client(), group.headers
    url = a.post("/upload-url", json={"model_name": "adder"}, headers=headers).json
    assert requests.put(url, data=inference_zip(), timeout=30).status_code == 200
    assert wait_built(a, headers, "adder")["build_status"] == "success"

    answer = b.post("/custom", json={"model": "adder", "numbers": [4, 5]}, headers=headers)

    assert answer.status_code == 200, answer.json
    assert answer.json["output"] == {"sum": 9}
    files_dir, venv_dir = version_dirs(settings_of(group.b).data_dir, _serving_id(group.a, "adder"))
    assert os.path.isfile(os.path.join(files_dir, "inference.py"))
    assert os.path.isfile(os.path.join(venv_dir, "pyvenv.cfg"))  # built here, from the fetched files


def test_a_dataset_sent_to_b_parsed_on_a_is_trained_on_by_b_whose_version_a_serves(replicas):
    group = replicas(TRAINER=True, TRAINING_POLL_S=0.1)
    a, headers = group.a.test_client(), group.headers
    dataset = add_dataset(group.b.test_client(), headers, iris_csv(), name="iris")  # b runs no trainer
    assert dataset["status"] == "ready", dataset["parse_logs"]
    assert os.path.isfile(os.path.join(dataset_dir(settings_of(group.a).data_dir, dataset["id"]), "rows.jsonl"))
    group.a.extensions["training"].stop()  # from here on only b trains
    b_app = group.replica("b", TRAINER=True, TRAINING_POLL_S=0.1)
    assert os.listdir(dataset_dir(settings_of(b_app).data_dir, dataset["id"])) == ["source"]  # as sent, not parsed

    done = wait_job(a, headers, start_job(a, headers, "iris", task="tabular", dataset_id=dataset["id"])["id"])

    assert done["status"] == "succeeded", done["message"]
    assert os.path.isfile(os.path.join(dataset_dir(settings_of(b_app).data_dir, dataset["id"]), "rows.jsonl"))
    assert not os.path.exists(os.path.join(dataset_dir(settings_of(b_app).data_dir, dataset["id"]), "source"))
    version_id = _serving_id(group.a, "iris")
    assert not os.path.exists(version_dirs(settings_of(group.a).data_dir, version_id)[0])  # trained on b
    for app in (group.a, b_app):
        answer = predict(app, headers, "iris")
        assert answer.status_code == 200, answer.json
        assert answer.json["prediction"] == "Iris-setosa"
    assert f"versions/{version_id}/files.tar" in group.keys()
    assert f"parsed-datasets/{dataset['id']}.tar" in group.keys()
    assert a.delete(f"/datasets/{dataset['id']}", headers=headers).status_code == 200
    assert not [key for key in group.keys() if dataset["id"] in key]


def test_a_version_trained_on_a_is_kept_on_from_by_b_which_fetches_the_parent_from_the_bucket(replicas):
    group = replicas(TRAINER=True, TRAINING_POLL_S=0.1)
    a, headers = group.a.test_client(), group.headers
    dataset = add_dataset(a, headers, iris_csv(), name="iris")
    first = wait_job(a, headers, start_job(a, headers, "iris", task="tabular", dataset_id=dataset["id"])["id"])
    assert first["status"] == "succeeded", first["message"]
    group.a.extensions["training"].stop()  # from here on only b trains, and b has no copy of iris@1
    b_app = group.replica("b", TRAINER=True, TRAINING_POLL_S=0.1)
    parent_id = _serving_id(group.a, "iris")
    assert not os.path.exists(version_dirs(settings_of(b_app).data_dir, parent_id)[0])

    done = wait_job(a, headers, start_job(a, headers, "iris", task="tabular", dataset_id=dataset["id"],
                                          base_model="iris@1")["id"])

    assert done["status"] == "succeeded", done["message"]
    assert done["parent"] == {"model": "iris", "version": 1} and done["version"] == 2
    assert os.path.isdir(version_dirs(settings_of(b_app).data_dir, parent_id)[0])  # fetched from the bucket
    log = a.get(f"/jobs/{done['id']}/log", headers=headers).json["log"]
    assert "kept on from iris@1: warm start" in log


def tar_bundle(members: list[tarfile.TarInfo], content: bytes = b"x") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(content) if member.isreg() else None)
    return buffer.getvalue()


def _member(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.size = kind, linkname, 1 if kind == tarfile.REGTYPE else 0
    return member


@pytest.mark.parametrize("bad", [
    _member("../escaped.txt"), _member("sub/../../escaped.txt"), _member("/tmp/escaped.txt"),
    _member("link", tarfile.SYMTYPE, "/etc/passwd"), _member("hard", tarfile.LNKTYPE, "config.json"),
    _member("fifo", tarfile.FIFOTYPE), _member("config.json"), _member("config.json/inside"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "fifo", "twice", "under-a-file"])
def test_a_tampered_bundle_is_refused_with_a_503_and_nothing_is_written(replicas, iris_files, bad):
    group = replicas()
    version_id = group.publish("iris", *iris_files, store=False)
    key = f"{group.shared['S3_PREFIX']}versions/{version_id}/files.tar"
    group.seaweed.client().put_object(Bucket=BUCKET, Key=key, Body=tar_bundle([_member("config.json"), bad]))

    answer = predict(group.b, group.headers, "iris")

    assert answer.status_code == 503
    assert "Version 1 of model 'iris'" in answer.json["message"] and "refused" in answer.json["message"]
    root_on_b = os.path.dirname(version_dirs(settings_of(group.b).data_dir, version_id)[0])
    assert not os.path.exists(os.path.join(root_on_b, "files"))
    assert [name for name in os.listdir(root_on_b) if not name.startswith(".")] == []  # no temporary folder left
    assert not any("escaped" in name for _, _, names in os.walk(group.tmp_path) for name in names)
    assert not os.path.exists("/tmp/escaped.txt")


def test_a_bundle_past_the_unpacked_size_limit_is_refused(replicas, iris_files):
    group = replicas()
    version_id = group.publish("iris", *iris_files, store=False)
    small = group.replica("c", UPLOAD_MAX_UNCOMPRESSED_BYTES=1000)
    big = _member("model.joblib")
    big.size = 2000
    key = f"{group.shared['S3_PREFIX']}versions/{version_id}/files.tar"
    group.seaweed.client().put_object(Bucket=BUCKET, Key=key, Body=tar_bundle([big], b"x" * 2000))

    answer = predict(small, group.headers, "iris")

    assert answer.status_code == 503 and "more than 1000 bytes" in answer.json["message"]
    assert not os.path.exists(version_dirs(settings_of(small).data_dir, version_id)[0])


def test_a_bundle_missing_from_the_bucket_or_an_unreachable_store_answers_503_naming_the_version(replicas, iris_files):
    group = replicas()
    group.publish("iris", *iris_files, store=False)

    missing = predict(group.b, group.headers, "iris")

    assert missing.status_code == 503
    assert "Version 1 of model 'iris'" in missing.json["message"] and "no stored files" in missing.json["message"]
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    unreachable = group.make_app(**{**group.shared, "DATA_DIR": str(group.tmp_path / "c"),
                                    "S3_ENDPOINT_URL": f"http://127.0.0.1:{dead_port}"})
    answer = predict(unreachable, group.headers, "iris")
    assert answer.status_code == 503
    assert "Version 1 of model 'iris'" in answer.json["message"] and "INFER_S3_ENDPOINT_URL" in answer.json["message"]
    refused = unreachable.test_client().delete("/models/iris", headers=group.headers)
    assert refused.status_code == 503 and "was not deleted" in refused.json["message"]
    assert predict(group.a, group.headers, "iris").status_code == 200  # still there


def _count_downloads(monkeypatch, storage, before=lambda: None) -> list:
    calls = []
    download = storage.download

    def counted(*args, **kwargs):
        calls.append(args[0])
        before()
        return download(*args, **kwargs)

    monkeypatch.setattr(storage, "download", counted)
    return calls


def test_two_requests_at_once_on_b_fetch_a_new_version_once(replicas, iris_files, monkeypatch):
    group = replicas()
    version_id = group.publish("iris", *iris_files)
    cache = group.b.extensions["models"].cache
    asked = []
    get = cache.get
    monkeypatch.setattr(cache, "get", lambda key, load=None: asked.append(key) or get(key, load))
    user_models = group.b.extensions["user_models"]
    # The fetch starts only once both requests have asked the cache for the version.
    downloads = _count_downloads(monkeypatch, user_models.storage, before=lambda: until(lambda: len(asked) == 2))
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(predict(group.b, group.headers, "iris")))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [answer.status_code for answer in answers] == [200, 200]
    assert answers[0].json == answers[1].json
    assert asked == [cache_key(version_id)] * 2 and len(downloads) == 1


def test_another_process_of_the_replica_waits_for_the_fetch_under_way(replicas, iris_files, monkeypatch):
    group = replicas()
    version_id = group.publish("iris", *iris_files)
    config, storage = settings_of(group.b), group.b.extensions["user_models"].storage
    downloads = _count_downloads(monkeypatch, storage)
    lock_dir = os.path.join(config.data_dir, "user_models", ".locks")
    fetch = [config, storage, group.b.extensions["sandbox"], version_id, iris_files[0], "Version 1 of model 'iris'"]
    waiter = threading.Thread(target=ensure_version_files, args=fetch)
    with bundles.folder_lock(lock_dir, str(version_id)):  # as another worker process fetching it
        waiter.start()
        lock_inode = os.stat(os.path.join(lock_dir, f"{version_id}.lock")).st_ino
        until(lambda: any(" -> FLOCK" in line and f":{lock_inode} " in line for line in open("/proc/locks")))
        ensure_files_dir = version_dirs(config.data_dir, version_id)[0]
        assert bundles.fetch(storage, storage.named(f"versions/{version_id}/files.tar"), ensure_files_dir,
                             bundles.BundleLimits.from_config(config))
    waiter.join()

    assert len(downloads) == 1  # the waiter found the files in place
    assert predict(group.b, group.headers, "iris").status_code == 200


def test_versions_past_the_kept_number_lose_their_bundle_and_other_replicas_their_copy(replicas, iris_files):
    group = replicas(USER_MODEL_VERSIONS_KEPT=1)
    first = group.publish("iris", *iris_files)
    assert predict(group.b, group.headers, "iris@1").status_code == 200  # b has a copy of version 1 now
    second = group.publish("iris", *iris_files, number=2)
    group.b.extensions["models"].cache.evict(cache_key(first))

    removed = remove_old_versions(group.a.extensions["db"].sessions, settings_of(group.a).data_dir, 1,
                                  _model_id(group.a, "iris"), group.a.extensions["storage"])

    assert removed == [first]
    assert group.keys() == [f"versions/{second}/files.tar"]
    copy_on_b = os.path.dirname(version_dirs(settings_of(group.b).data_dir, first)[0])
    assert os.path.isdir(copy_on_b)  # b has not noticed yet; the database answers for it
    gone = predict(group.b, group.headers, "iris@1")
    assert gone.status_code == 404 and "no longer has its files" in gone.json["message"]
    versions = group.b.test_client().get("/models/iris/versions", headers=group.headers).json
    assert [v["has_files"] for v in versions] == [False, True]
    os.utime(copy_on_b, (0, 0))  # long since fetched
    group.b.extensions["user_models"].unload_stale(group.b.extensions["db"].sessions)  # each builder poll
    assert not os.path.exists(copy_on_b)


def _model_id(app, name: str) -> int:
    with app.extensions["db"].sessions() as session:
        return session.scalar(select(UserModel.id).where(UserModel.name == name))


def _serving_id(app, name: str) -> int:
    with app.extensions["db"].sessions() as session:
        return session.scalar(select(UserModel.current_version_id).where(UserModel.name == name))
