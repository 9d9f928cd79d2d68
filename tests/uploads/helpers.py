"""Build zips of user models in every accepted format, and drive the upload flow over HTTP."""

import io
import json
import os
import stat
import time
import zipfile
from urllib.parse import urlsplit

import cloudpickle

CONFIG = {"description": "A test model", "tasks": ["custom", "text-classification"]}


def make_zip(files: dict[str, bytes | str], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def hf_folder_zip(folder: str, tasks: list[str], description: str = "a Hugging Face folder") -> bytes:
    """The folder's files, its config.json carrying the upload's description and tasks."""
    files = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), "rb") as model_file:
            files[name] = model_file.read()
    config = json.loads(files["config.json"])
    config.update(description=description, tasks=tasks)
    files["config.json"] = json.dumps(config)
    return make_zip(files)


class KeywordModel:
    """A pickled Backprop-format model: custom echoes, text-classification scores by keyword."""

    def __init__(self, greeting: str):
        self.greeting = greeting

    def __call__(self, task_input, task):
        if task == "text-classification":
            text = task_input["text"].lower()
            return {label: (1.0 if label.lower() in text else 0.0) for label in task_input["labels"]}
        return {"greeting": self.greeting, "echo": task_input}


def pickle_zip(greeting="hello", tasks=None, requirements="cloudpickle\n") -> bytes:
    cloudpickle.register_pickle_by_value(__import__(__name__))  # the worker cannot import the tests
    model = cloudpickle.dumps(KeywordModel(greeting))
    config = {**CONFIG, "tasks": tasks or CONFIG["tasks"]}
    return make_zip({"model.bin": model, "config.json": json.dumps(config), "requirements.txt": requirements})


INFERENCE_PY = '''
import os

def load_model(model_dir):
    with open(os.path.join(model_dir, "weights.txt")) as f:
        return {"scale": float(f.read())}

def call_model(model, task_input, task):
    if task == "text-vectorisation":
        return [model["scale"] * len(task_input["text"]), 1.0]
    if task == "custom":
        behaviour = task_input.get("behaviour")
        if behaviour == "exit":
            os._exit(3)
        if behaviour == "hang":
            import time
            time.sleep(3600)
        if behaviour == "raise":
            raise ValueError("asked to fail")
        if behaviour == "memory":
            hog = bytearray(8 * 1024 ** 3)
        return {"sum": sum(task_input.get("numbers", []))}
    raise ValueError(task)
'''


def inference_zip(scale="2", tasks=("text-vectorisation", "custom"), top_folder="") -> bytes:
    config = {"description": "code model", "tasks": list(tasks)}
    return make_zip({
        f"{top_folder}inference.py": INFERENCE_PY,
        f"{top_folder}weights.txt": scale,
        f"{top_folder}config.json": json.dumps(config),
        f"{top_folder}requirements.txt": "",
    })


def upload_url(client, headers, name) -> str:
    response = client.post("/upload-url", json={"model_name": name}, headers=headers)
    assert response.status_code == 200, response.json
    return response.json


def put_local(client, url: str, data: bytes):
    parts = urlsplit(url)
    return client.put(f"{parts.path}?{parts.query}", data=data, headers={"content-type": "application/zip"})


def deploy(client, headers, name, data: bytes) -> dict:
    """upload-url, PUT, wait for the build; the model's details."""
    response = put_local(client, upload_url(client, headers, name), data)
    assert response.status_code == 200, response.json
    return wait_built(client, headers, name)


def wait_built(client, headers, name, timeout=180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        details = client.get(f"/models/{name}", headers=headers).json
        # awaiting_upload too: with S3 the service notices the upload by itself, a little later.
        if details["build_status"] not in ("building", "awaiting_upload"):
            return details
        time.sleep(0.3)
    raise AssertionError(f"{name} still building after {timeout}s")
