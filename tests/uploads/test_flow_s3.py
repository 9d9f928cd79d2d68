"""The deployment flow with S3 storage against a real SeaweedFS server: presigned PUT,
the watcher notices the upload, the build runs, the model serves."""

import io
import json
import os
import time
import zipfile

import pytest
import requests

from ..seaweedfs import seaweed_for_module
from ..tiny_models import GO_EMOTIONS
from .helpers import inference_zip, pickle_zip, wait_built

BUCKET = "user-uploads"


@pytest.fixture(scope="module")
def seaweed():
    yield from seaweed_for_module(BUCKET)


@pytest.fixture
def s3_service(client_for, seaweed, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    api = client_for(STORAGE="s3", S3_BUCKET=BUCKET, S3_ENDPOINT_URL=seaweed.endpoint, S3_REGION="us-east-1",
                     BUILDER=True, BUILD_POLL_S=0.3, MODEL_DIR=tiny_model_dir)
    return api.client, api.headers


def hf_zip(tiny_dir) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in os.listdir(tiny_dir["emotion_classifier"]):
            content = open(os.path.join(tiny_dir["emotion_classifier"], name), "rb").read()
            if name == "config.json":
                content = json.dumps({**json.loads(content), "tasks": ["emotion"], "description": "hf"}).encode()
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize("model_format", ["pickle", "inference", "huggingface"])
def test_full_flow_through_a_real_s3_server(s3_service, seaweed, tiny_dir, model_format):
    client, headers = s3_service
    archive, path, body, expected = {
        "pickle": (pickle_zip("from s3"), "/custom", {"model": "s3-model"}, {"greeting": "from s3", "echo": {}}),
        "inference": (inference_zip(), "/custom", {"model": "s3-model", "numbers": [4, 5]}, {"sum": 9}),
        "huggingface": (hf_zip(tiny_dir), "/emotion", {"model": "s3-model", "text": "hello"}, None),
    }[model_format]

    url = client.post("/upload-url", json={"model_name": "s3-model"}, headers=headers).json
    assert url.startswith(f"{seaweed.endpoint}/{BUCKET}/") and "X-Amz-Signature=" in url
    assert 3590 <= int(url.split("X-Amz-Expires=")[1].split("&")[0]) <= 3600  # valid for an hour
    assert requests.put(url, data=archive, timeout=30).status_code == 200

    details = wait_built(client, headers, "s3-model")
    assert details["build_status"] == "success", details
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200
    if expected is not None:
        assert response.json["output"] == expected
    else:  # the built-in emotion code served the uploaded classifier
        assert response.json["output"] and set(response.json["output"].split(", ")) <= set(GO_EMOTIONS)
    # The archive is removed from the bucket once built; the built files stay there for other replicas.
    listed = [o["Key"] for o in seaweed.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert len(listed) == 1 and listed[0].endswith("/files.tar"), listed

    assert client.delete("/models/s3-model", headers=headers).status_code == 200
    assert client.get("/models/s3-model", headers=headers).status_code == 404
    assert seaweed.client().list_objects_v2(Bucket=BUCKET).get("Contents", []) == []


def test_an_archive_over_the_upload_limit_in_the_bucket_fails_its_build_before_download(
        client_for, seaweed, monkeypatch, tmp_path):
    # A presigned PUT cannot bound what is put; the service checks the object's size first.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    api = client_for(STORAGE="s3", S3_BUCKET=BUCKET, S3_ENDPOINT_URL=seaweed.endpoint, S3_REGION="us-east-1",
                     BUILDER=True, BUILD_POLL_S=0.3, UPLOAD_MAX_BYTES=4096)
    app, client, headers = api.app, api.client, api.headers
    downloads = []
    storage = app.extensions["storage"]
    monkeypatch.setattr(storage.client, "get_object",
                        lambda **kw: downloads.append(kw) or pytest.fail("downloaded an over-limit archive"))
    url = client.post("/upload-url", json={"model_name": "too-big"}, headers=headers).json

    assert requests.put(url, data=os.urandom(64 * 1024), timeout=30).status_code == 200
    details = wait_built(client, headers, "too-big")

    assert details["build_status"] == "fail"
    assert "65536 bytes" in details["build_message"] and "INFER_UPLOAD_MAX_BYTES" in details["build_message"]
    assert downloads == []


def test_a_dataset_put_to_its_presigned_url_is_noticed_parsed_and_deleted_with_it(client_for, seaweed, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    api = client_for(STORAGE="s3", S3_BUCKET=BUCKET, S3_ENDPOINT_URL=seaweed.endpoint, S3_REGION="us-east-1",
                     TRAINER=True, TRAINING_POLL_S=0.2)
    client, headers = api.client, api.headers
    created = client.post("/datasets", json={"upload": True, "name": "from-s3"}, headers=headers).json
    url = created["upload_url"]
    assert url.startswith(f"{seaweed.endpoint}/{BUCKET}/") and "X-Amz-Signature=" in url
    data = "text,label\n" + "".join(f"good {i},pos\nbad {i},neg\n" for i in range(5))
    assert requests.put(url, data=data.encode(), timeout=30).status_code == 200

    deadline = time.monotonic() + 60
    while (state := client.get(f"/datasets/{created['id']}", headers=headers).json)["status"] not in ("ready", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.1)
    assert state["status"] == "ready" and state["stats"]["labels"] == {"pos": 5, "neg": 5}
    assert any("bucket" in line["message"] for line in state["parse_logs"])
    storage = api.app.extensions["storage"]
    assert sorted(o["Key"] for o in seaweed.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])) == [
        storage.dataset_key(created["id"]), storage.named(f"parsed-datasets/{created['id']}.tar")]
    assert client.delete(f"/datasets/{created['id']}", headers=headers).status_code == 200
    assert seaweed.client().list_objects_v2(Bucket=BUCKET).get("Contents", []) == []
