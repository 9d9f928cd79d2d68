"""The queue's messages only say "this row may have work": the database decides.
In-process workers (burst: they run what is queued, then return)."""

import logging
import os
import signal
import time

from redis import Redis
from sqlalchemy import select

from core.tables import ModelVersion
from uploads.storage import LocalStorage
from web.settings import settings_of

from ..training.flow import iris_csv
from ..uploads.helpers import inference_zip, put_local, upload_url, wait_built


def _claims(caplog, table: str, row_id) -> int:
    return sum(record.getMessage() == f"claimed {table} {row_id}" for record in caplog.records)


def _dataset(client, headers, dataset_id: str) -> dict:
    return client.get(f"/datasets/{dataset_id}", headers=headers).json


def test_a_message_delivered_twice_runs_the_work_once(client_for, redis_url, caplog):
    caplog.set_level(logging.INFO)
    api = client_for(QUEUE_URL=redis_url)
    work = api.app.extensions["work"]
    created = api.client.post("/datasets", json={"data": iris_csv()}, headers=api.headers)
    assert created.status_code == 201 and created.json["status"] == "processing"
    dataset_id = created.json["id"]
    work.submit("parse", dataset_id)  # delivered again, as after a redelivery
    assert work.queues["datasets"].count == 2

    work.run_worker(["datasets"], burst=True)

    assert work.queues["datasets"].count == 0
    parsed = _dataset(api.client, api.headers, dataset_id)
    assert parsed["status"] == "ready" and parsed["stats"]["rows"] == 150
    assert _claims(caplog, "datasets", dataset_id) == 1


def test_work_submitted_while_redis_is_down_is_done_once_redis_is_back(client_for, redis_server, redis_url, caplog):
    caplog.set_level(logging.INFO)
    api = client_for(QUEUE_URL=redis_url)
    work = api.app.extensions["work"]
    redis_server.stop()
    created = api.client.post("/datasets", json={"data": iris_csv()}, headers=api.headers)
    assert created.status_code == 201  # the row is saved; only the message is missing
    dataset_id = created.json["id"]
    assert any("queue unreachable" in record.getMessage() and dataset_id in record.getMessage()
               for record in caplog.records)

    redis_server.start()  # back, empty: the message was never sent
    assert Redis.from_url(redis_url).dbsize() == 0
    work.run_worker(["datasets"], burst=True)  # its sweep finds the due row

    assert _dataset(api.client, api.headers, dataset_id)["status"] == "ready"
    assert _claims(caplog, "datasets", dataset_id) == 1


def test_a_worker_told_to_stop_mid_build_hands_the_build_back_for_another(client_for, redis_url, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    api = client_for(QUEUE_URL=redis_url)
    app, work = api.app, api.app.extensions["work"]
    builder = app.extensions["builder"]
    assert put_local(api.client, upload_url(api.client, api.headers, "coder"), inference_zip()).status_code == 200
    version_id = work.runners["build"].due()[0]
    real_steps = builder._build_steps

    def sigterm_mid_build(*args):
        os.kill(os.getpid(), signal.SIGTERM)  # as `docker stop` or systemd sends it
        time.sleep(60)  # a long build step, cut short by the hand-back
        raise AssertionError("the build went on after SIGTERM")

    monkeypatch.setattr(builder, "_build_steps", sigterm_mid_build)
    work.run_worker(["builds"], burst=True)

    with app.extensions["db"].sessions() as session:
        assert session.get(ModelVersion, version_id).status == "building"  # not recorded as failed
    assert work.runners["build"].due() == [version_id]  # claimable again now, not once its lease runs out
    assert work.queues["builds"].count == 1  # and sent on for another worker

    monkeypatch.setattr(builder, "_build_steps", real_steps)
    work.stopping = False  # another worker (a fresh process in production)
    work.run_worker(["builds"], burst=True)
    assert wait_built(api.client, api.headers, "coder")["build_status"] == "success"
    assert _claims(caplog, "model_versions", version_id) == 2


def test_the_sweep_notices_uploads_that_arrived_in_the_bucket(client_for, redis_url, monkeypatch):
    """With S3 nobody tells the service that an upload arrived: the sweep looks."""
    api = client_for(QUEUE_URL=redis_url)
    work, builder = api.app.extensions["work"], api.app.extensions["builder"]
    upload_url(api.client, api.headers, "coder")
    with api.app.extensions["db"].sessions() as session:
        (version_id,) = session.scalars(select(ModelVersion.id)).all()
    with open(builder.storage.archive_path(version_id), "wb") as archive:
        archive.write(inference_zip())  # PUT straight to the bucket: no request reaches the service
    assert work.queues["builds"].count == 0

    with monkeypatch.context() as patch:
        patch.setattr(builder, "storage", BucketLike(settings_of(api.app)))
        assert work.sweep() == 1
    work.run_worker(["builds"], burst=True)
    built = wait_built(api.client, api.headers, "coder")
    assert built["build_status"] == "success", api.client.get("/models/coder/build-log", headers=api.headers).json


class BucketLike(LocalStorage):
    """Local files that the builder polls for, as it polls S3."""

    kind = "s3"

    def uploaded(self, version_id: int, key: str | None = None) -> bool:
        return os.path.isfile(self.archive_path(version_id))


def mark(path: str) -> None:
    with open(path, "w") as out:
        out.write("ran")


def test_a_worker_runs_only_the_service_s_own_function(client_for, redis_url, tmp_path, caplog):
    api = client_for(QUEUE_URL=redis_url)
    work = api.app.extensions["work"]
    marker = tmp_path / "ran"
    work.queues["builds"].enqueue_call(f"{__name__}.mark", args=(str(marker),))
    work.run_worker(["builds"], burst=True)
    assert not marker.exists()
    assert any("refused job" in record.getMessage() for record in caplog.records)
    assert work.queues["builds"].count == 0


def test_a_web_process_with_a_queue_drops_a_replaced_version_and_serves_the_new_one(client_for, redis_url):
    # The worker builds; the web process runs no builder loop, so its own thread
    # must notice that the version it holds was replaced.
    api = client_for(QUEUE_URL=redis_url, BUILDER=True, BUILD_POLL_S=0.05)
    work = api.app.extensions["work"]
    vectorise = {"text": "abcd", "model": "coder"}

    def build(scale: str) -> None:
        assert put_local(api.client, upload_url(api.client, api.headers, "coder"), inference_zip(scale)).status_code \
            == 200
        work.run_worker(["builds"], burst=True)
        assert wait_built(api.client, api.headers, "coder")["build_status"] == "success"

    build("2")
    assert api.client.post("/text-vectorisation", json=vectorise, headers=api.headers).json["vector"] == [8.0, 1.0]
    cache = api.app.extensions["models"].cache
    first = set(cache.loaded())
    build("3")
    deadline = time.monotonic() + 30
    while first & set(cache.loaded()):
        assert time.monotonic() < deadline, "the replaced version was never unloaded"
        time.sleep(0.05)
    assert api.client.post("/text-vectorisation", json=vectorise, headers=api.headers).json["vector"] == [12.0, 1.0]
