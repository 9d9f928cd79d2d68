"""Batches on two replicas (apps on their own data dirs) sharing one database and
one real S3 store (SeaweedFS): a batch taken in by one runs on the other, whose
output the first answers; a replica that finds less output than the record
(the one that ran it died before sharing it) resumes from the lines it has."""

import os

import pytest
from sqlalchemy import update

from core.tables import Batch

from ..conftest import new_key
from ..seaweedfs import seaweed_for_module
from .test_batches import EMOTION_TEXTS, jsonl, output_lines, post_batch, request_line

BUCKET = "batches"


@pytest.fixture(scope="module")
def seaweed():
    yield from seaweed_for_module(BUCKET)


class Replica:
    def __init__(self, app, headers):
        self.app, self.client, self.headers = app, app.test_client(), headers


@pytest.fixture
def replicas(make_app, tmp_path, seaweed, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    shared = {"STORAGE": "s3", "S3_BUCKET": BUCKET, "S3_ENDPOINT_URL": seaweed.endpoint, "S3_REGION": "us-east-1",
              "S3_PREFIX": f"{tmp_path.name}/", "DATABASE_URL": f"sqlite:///{tmp_path}/shared.db",
              "MODEL_DIR": tiny_model_dir}
    a = make_app(**shared, DATA_DIR=str(tmp_path / "a"))
    b = make_app(**shared, DATA_DIR=str(tmp_path / "b"))
    headers = {"x-api-key": new_key(a, "alice")}
    return Replica(a, headers), Replica(b, headers)


def test_a_batch_taken_in_by_one_replica_runs_on_the_other_and_either_answers_its_output(replicas):
    a, b = replicas
    lines = [request_line(f"n{number}", "/emotion", {"text": EMOTION_TEXTS[number % 3]}) for number in range(12)]
    batch_id = post_batch(a, jsonl(lines)).json["id"]
    assert b.app.extensions["batches"].run_claimed(batch_id)  # b's data dir had no input: it came from the bucket
    on_b = b.client.get(f"/batches/{batch_id}/output", headers=b.headers).data
    assert len(on_b.splitlines()) == 12
    assert a.client.get(f"/batches/{batch_id}/output", headers=a.headers).data == on_b
    assert output_lines(a, batch_id)[5]["custom_id"] == "n5"


def test_a_replica_behind_the_record_resumes_from_the_lines_it_finds(replicas):
    a, b = replicas
    lines = [request_line(f"n{number}", "/emotion", {"text": EMOTION_TEXTS[number % 3]}) for number in range(12)]
    batch_id = post_batch(a, jsonl(lines)).json["id"]
    assert a.app.extensions["batches"].run_claimed(batch_id)
    whole = a.client.get(f"/batches/{batch_id}/output", headers=a.headers).data
    # As if a had died after recording all 12 lines but having shared none of its output, and
    # b held 5 lines and a half from an earlier run.
    with a.app.extensions["db"].sessions() as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(status="queued", completed_at=None))
        session.commit()
    a.app.extensions["storage"].delete_key(a.app.extensions["storage"].named(f"batches/{batch_id}/output.jsonl"))
    path = f"{b.app.extensions['settings'].data_dir}/batches/{batch_id}/output.jsonl"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as output:
        output.write(b"".join(whole.splitlines(keepends=True)[:5]) + b'{"id":"half')
    assert b.app.extensions["batches"].run_claimed(batch_id)
    done = b.client.get(f"/batches/{batch_id}", headers=b.headers).json
    assert done["status"] == "completed" and done["request_counts"] == {"total": 12, "completed": 12, "failed": 0}
    assert b.client.get(f"/batches/{batch_id}/output", headers=b.headers).data == whole
