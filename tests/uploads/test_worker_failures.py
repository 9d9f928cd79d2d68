"""A user model whose code exits, hangs, raises or eats memory fails that request only;
the service and other models keep serving, and the worker comes back."""

import pytest

from .helpers import deploy, inference_zip, pickle_zip


@pytest.fixture
def service(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, WORKER_CALL_TIMEOUT_S=3, WORKER_MEMORY_MB=2048)
    client, headers = api.client, api.headers
    assert deploy(client, headers, "fragile", inference_zip())["build_status"] == "success"
    assert deploy(client, headers, "steady", pickle_zip("still here"))["build_status"] == "success"
    return client, headers


def call(client, headers, **fields):
    return client.post("/custom", json={"model": "fragile", **fields}, headers=headers)


@pytest.mark.parametrize(
    "behaviour,status,words",
    [
        ("exit", 502, "exited"),
        ("hang", 504, "did not answer within 3s"),
        ("raise", 502, "asked to fail"),
        ("memory", 502, "MemoryError"),
    ],
)
def test_a_misbehaving_model_fails_only_that_request(service, behaviour, status, words):
    client, headers = service

    failed = call(client, headers, behaviour=behaviour)

    assert failed.status_code == status, failed.json
    assert words in failed.json["message"]
    assert call(client, headers, numbers=[2, 3]).json["output"] == {"sum": 5}  # the worker is back
    other = client.post("/custom", json={"model": "steady"}, headers=headers)
    assert other.json["output"]["greeting"] == "still here"
    assert client.get("/healthz").status_code == 200


def test_user_code_runs_in_its_own_sandboxed_process_and_venv_never_the_web_process(client_for):
    import json
    import os

    from .helpers import make_zip

    code = ("import os\ndef load_model(d):\n    return None\ndef call_model(m, i, t):\n"
            "    return {'pid': os.getpid(), 'uid': os.getuid(), 'exe': __import__('sys').executable}\n")
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    client, headers = api.client, api.headers
    archive = make_zip({"inference.py": code, "config.json": json.dumps({"tasks": ["custom"]})})
    assert deploy(client, headers, "whoami", archive)["build_status"] == "success"

    output = client.post("/custom", json={"model": "whoami"}, headers=headers).json["output"]

    assert output["pid"] != os.getpid()
    assert output["exe"] == "/venv/bin/python"  # the model's own venv, mounted in its sandbox
    if os.geteuid() == 0:  # as root, sandboxes run under uids of their own
        assert output["uid"] >= 200_000
