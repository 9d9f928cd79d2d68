"""The whole deployment flow over HTTP with local storage, for each accepted format."""

import time

import pytest

from web.settings import settings_of

from ..conftest import new_key
from .helpers import deploy, inference_zip, pickle_zip, put_local, upload_url, wait_built


@pytest.fixture
def service(client_for, tiny_model_dir):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, MODEL_DIR=tiny_model_dir)
    return api.app, api.client, api.headers


def test_pickle_model_upload_build_call_list_delete(service):
    app, client, headers = service
    url = upload_url(client, headers, "keywords")
    assert "/uploads/" in url and "signature=" in url

    assert put_local(client, url, pickle_zip("hi there")).status_code == 200
    details = wait_built(client, headers, "keywords")

    assert details["build_status"] == "success", details
    assert details["tasks"] == ["custom", "text-classification"]
    assert details["description"] == "A test model"
    assert details["id"] == "model_keywords" and details["last_deployment"].endswith("Z")
    assert details["config_url"].endswith("/models/keywords/files/config.json")
    assert client.get(details["model_url"].split("localhost")[-1], headers=headers).status_code == 200

    custom = client.post("/custom", json={"model": "keywords", "anything": [1, 2]}, headers=headers)
    assert custom.status_code == 200
    assert custom.json["output"] == {"greeting": "hi there", "echo": {"anything": [1, 2]}}
    # Far more than a pipe holds at once, both ways.
    big = list(range(100_000))
    echoed = client.post("/custom", json={"model": "keywords", "big": big}, headers=headers)
    assert echoed.status_code == 200 and echoed.json["output"]["echo"]["big"] == big

    classified = client.post("/text-classification", json={"text": "my sofa broke", "labels": ["sofa", "space"],
                                                           "model": "keywords"}, headers=headers)
    assert classified.json["probabilities"] == {"sofa": 1.0, "space": 0.0}

    listed = client.get("/models", headers=headers).json
    assert [m["name"] for m in listed] == ["keywords"]
    with_global = client.get("/models?include_global=true", headers=headers).json
    assert "all-MiniLM-L6-v2" in [m["name"] for m in with_global]

    log = client.get("/models/keywords/build-log", headers=headers).json
    assert "custom: sample answered" in log["log"]

    assert client.delete("/models/keywords", headers=headers).status_code == 200
    assert client.get("/models/keywords", headers=headers).status_code == 404
    assert client.post("/custom", json={"model": "keywords"}, headers=headers).status_code == 404


def test_inference_py_model_in_a_top_folder_serves_a_builtin_task(service):
    _app, client, headers = service
    put_local(client, upload_url(client, headers, "coder"), inference_zip("3", top_folder="coder/"))
    assert wait_built(client, headers, "coder")["build_status"] == "success"

    vectors = client.post("/text-vectorisation", json={"text": ["ab", "abcd"], "model": "coder"}, headers=headers)
    assert vectors.json["vector"] == [[6.0, 1.0], [12.0, 1.0]]
    assert client.post("/custom", json={"model": "coder", "numbers": [1, 2, 3]}, headers=headers).json["output"] == {"sum": 6}


def test_hugging_face_folder_serves_a_builtin_task_without_user_code(service, tiny_dir):
    import io
    import json
    import os
    import zipfile

    _app, client, headers = service
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in os.listdir(tiny_dir["nli"]):
            content = open(os.path.join(tiny_dir["nli"], name), "rb").read()
            if name == "config.json":
                config = json.loads(content)
                config.update(description="my NLI", tasks=["text-classification"])
                content = json.dumps(config).encode()
            archive.writestr(name, content)
    details = deploy(client, headers, "my-nli", buffer.getvalue())
    assert details["build_status"] == "success", details

    response = client.post("/text-classification", json={"text": "x", "labels": ["a", "b"], "model": "my-nli"},
                           headers=headers)
    reference = client.post("/text-classification", json={"text": "x", "labels": ["a", "b"]}, headers=headers)
    assert response.status_code == 200
    # The same weights as the catalogue's (tiny) english model: the same answer.
    assert response.json == reference.json


def test_a_failing_new_version_leaves_the_previous_one_serving(service):
    _app, client, headers = service
    put_local(client, upload_url(client, headers, "steady"), pickle_zip("first"))
    assert wait_built(client, headers, "steady")["build_status"] == "success"

    broken = pickle_zip("second", requirements="this-package-does-not-exist-anywhere==0.0.1\n")
    put_local(client, upload_url(client, headers, "steady"), broken)
    details = wait_built(client, headers, "steady")

    assert details["build_status"] == "fail"
    assert "requirements.txt" in details["build_message"]
    output = client.post("/custom", json={"model": "steady"}, headers=headers).json["output"]
    assert output["greeting"] == "first"

    put_local(client, upload_url(client, headers, "steady"), pickle_zip("third"))
    assert wait_built(client, headers, "steady")["build_status"] == "success"
    assert client.post("/custom", json={"model": "steady"}, headers=headers).json["output"]["greeting"] == "third"


def test_another_account_cannot_see_use_or_delete_a_model(service):
    app, client, headers = service
    put_local(client, upload_url(client, headers, "private"), pickle_zip())
    assert wait_built(client, headers, "private")["build_status"] == "success"
    bob = {"x-api-key": new_key(app, "bob")}

    assert client.get("/models", headers=bob).json == []
    assert client.get("/models/private", headers=bob).status_code == 404
    assert client.post("/custom", json={"model": "private"}, headers=bob).status_code == 404
    assert client.delete("/models/private", headers=bob).status_code == 404
    assert client.get("/models/private/build-log", headers=bob).status_code == 404
    assert client.get("/models/private/files/config.json", headers=bob).status_code == 404
    assert client.get("/models/private", headers=headers).status_code == 200


def test_upload_url_checks_the_name_and_the_signature(service):
    _app, client, headers = service
    assert client.post("/upload-url", json={"model_name": "No Caps"}, headers=headers).status_code == 422
    assert client.post("/upload-url", json={"model_name": "ab"}, headers=headers).status_code == 422
    assert client.post("/upload-url", json={"model_name": "english"}, headers=headers).status_code == 409
    url = upload_url(client, headers, "signed")
    tampered = url.replace("signature=", "signature=0")
    assert put_local(client, tampered, pickle_zip()).status_code == 403
    assert put_local(client, url, b"").status_code == 400
    assert put_local(client, url, pickle_zip()).status_code == 200
    assert put_local(client, url, pickle_zip()).status_code == 409  # used once


IMAGE_MODEL = """
import base64, io

def load_model(model_dir):
    return None

def call_model(model, task_input, task):
    from PIL import Image
    image = Image.open(io.BytesIO(base64.b64decode(task_input["image"])))
    if task == "image-vectorisation":
        return [float(image.width), float(image.height)]
    return {label: 1.0 / len(task_input["labels"]) for label in task_input["labels"]}
"""


def test_a_code_model_serves_image_tasks_with_base64_images(service):
    import base64
    import io
    import json

    from PIL import Image

    from .helpers import make_zip

    _app, client, headers = service
    archive = make_zip({"inference.py": IMAGE_MODEL,
                        "config.json": json.dumps({"tasks": ["image-vectorisation", "image-classification"]})})
    assert deploy(client, headers, "pictures", archive)["build_status"] == "success"
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10)).save(buffer, "PNG")
    image = base64.b64encode(buffer.getvalue()).decode()

    vectors = client.post("/image-vectorisation", json={"image": [image], "model": "pictures"}, headers=headers)
    labels = client.post("/image-classification", json={"image": image, "labels": ["a", "b"], "model": "pictures"},
                         headers=headers)
    assert vectors.json["vector"] == [[20.0, 10.0]]
    assert labels.json["probabilities"] == {"a": 0.5, "b": 0.5}


def test_an_answer_of_the_wrong_shape_fails_the_build(service):
    import json

    from .helpers import make_zip

    _app, client, headers = service
    code = "def load_model(d):\n    return None\ndef call_model(m, i, t):\n    return 'not a vector'\n"
    archive = make_zip({"inference.py": code, "config.json": json.dumps({"tasks": ["text-vectorisation"]})})
    details = deploy(client, headers, "misshapen", archive)
    assert details["build_status"] == "fail"
    assert "should return a list of numbers" in details["build_message"]


def _version_ids_and_files(app) -> list[tuple[int, bool]]:
    import os

    from sqlalchemy import select

    from core.tables import ModelVersion
    from uploads.serving import version_dirs

    with app.extensions["db"].sessions() as session:
        ids = session.scalars(select(ModelVersion.id).order_by(ModelVersion.id)).all()
    return [(i, os.path.isdir(os.path.dirname(version_dirs(settings_of(app).data_dir, i)[0]))) for i in ids]


def test_only_the_newest_versions_keep_their_files(service):
    app, client, headers = service
    for scale in ("1", "2", "3"):
        assert deploy(client, headers, "rolling", inference_zip(scale))["build_status"] == "success"

    # INFER_USER_MODEL_VERSIONS_KEPT=2: the serving version and the one before it.
    assert [has_files for _id, has_files in _version_ids_and_files(app)] == [False, True, True]
    vectors = client.post("/text-vectorisation", json={"text": "ab", "model": "rolling"}, headers=headers)
    assert vectors.json["vector"] == [6.0, 1.0]
    assert client.get("/models/rolling", headers=headers).json["build_status"] == "success"


def _wait_unloaded(app, key: str, timeout=20) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if key not in app.extensions["models"].cache.loaded():
            return True
        time.sleep(0.1)
    return False


def test_a_version_replaced_or_deleted_through_another_worker_is_unloaded_in_this_one(make_app, client_for):
    # Two apps on one database and data dir, as two gunicorn workers.
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    builder, headers = api.app, api.headers
    other = make_app(BUILDER=True, BUILD_POLL_S=0.2)
    deploy(builder.test_client(), headers, "shared", inference_zip("2"))
    body = {"text": "ab", "model": "shared"}
    assert other.test_client().post("/text-vectorisation", json=body, headers=headers).json["vector"] == [4.0, 1.0]
    (first_version, _), = _version_ids_and_files(builder)
    assert f"user-{first_version}" in other.extensions["models"].cache.loaded()

    deploy(builder.test_client(), headers, "shared", inference_zip("3"))
    assert _wait_unloaded(other, f"user-{first_version}")
    assert other.test_client().post("/text-vectorisation", json=body, headers=headers).json["vector"] == [6.0, 1.0]

    second_version = _version_ids_and_files(builder)[-1][0]
    assert builder.test_client().delete("/models/shared", headers=headers).status_code == 200
    assert _wait_unloaded(other, f"user-{second_version}")
