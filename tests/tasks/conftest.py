"""Tiny random-weight models for every task, placed in a model dir under catalogue names."""

import os
import shutil

import pytest

from .. import tiny_models
from ..conftest import new_key

# tiny model builder -> the catalogue model keys it stands in for
STAND_INS = {
    "nli": ["bart-large-mnli", "xlm-roberta-large-xnli"],
    "emotion_classifier": ["roberta-base-go_emotions"],
    "extractive_qa": ["distilbert-base-cased-distilled-squad"],
    "seq2seq": ["distilbart-cnn-12-6", "t5-base-qa-summary-emotion"],
    "causal_lm": ["gpt2-large"],
    "clip": ["clip-vit-base-patch32"],
}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """{builder name: folder of that tiny model}."""
    root = tmp_path_factory.mktemp("tiny-models")
    built = {}
    for name in STAND_INS:
        path = str(root / name)
        getattr(tiny_models, f"build_tiny_{name}")(path)
        built[name] = path
    return built


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("model-dir")
    for name, keys in STAND_INS.items():
        for key in keys:
            shutil.copytree(tiny_dir[name], os.path.join(root, key))
    return str(root)


@pytest.fixture
def task_app(make_app, tiny_model_dir):
    return make_app(MODEL_DIR=tiny_model_dir)


@pytest.fixture
def task_client(task_app):
    client = task_app.test_client()
    headers = {"x-api-key": new_key(task_app, "alice")}

    def post(path, body):
        return client.post(path, json=body, headers=headers)

    return post
