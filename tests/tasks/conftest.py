"""Task tests run against the tiny models of tests/conftest.py."""

import pytest

from ..conftest import new_key


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
