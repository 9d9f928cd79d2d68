"""Task tests run against the tiny models of tests/conftest.py."""

import pytest


@pytest.fixture
def task_client(client_for, tiny_model_dir):
    api = client_for(MODEL_DIR=tiny_model_dir)

    def post(path, body):
        return api.client.post(path, json=body, headers=api.headers)

    return post
