"""The operator's side of the sandbox: /readyz says which isolation uploaded code
gets; without a sandbox, user-code builds fail saying why and how to fix it
(built-in tasks go on); INFER_SANDBOX=none is the explicit opt-out; the
environment allow-list never passes the service's own secrets; the data dir is
private."""

import json
import os
import stat

import pytest

import sandbox.runner
from app import create_app

from .helpers import deploy, make_zip

WHOAMI = ("import os\ndef load_model(d):\n    return None\ndef call_model(m, i, t):\n"
          "    return {'uid': os.getuid(), 'env': dict(os.environ)}\n")


def whoami_zip() -> bytes:
    return make_zip({"inference.py": WHOAMI, "config.json": json.dumps({"tasks": ["custom"]})})


def test_readyz_reports_the_isolation_user_code_gets(make_app):
    isolation = make_app().test_client().get("/readyz").json["checks"]["user_code_isolation"]

    assert isolation["kind"] == "bwrap" and isolation["available"] is True
    if os.geteuid() == 0:
        assert isolation["user"] == "one unprivileged uid per model version"


def test_without_bubblewrap_code_models_fail_to_build_saying_how_to_fix_it(client_for, monkeypatch):
    real_tool = sandbox.runner._tool
    monkeypatch.setattr(sandbox.runner, "_tool", lambda name: None if name == "bwrap" else real_tool(name))
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    client, headers = api.client, api.headers

    ready = client.get("/readyz")
    details = deploy(client, headers, "code", whoami_zip())

    assert ready.status_code == 200  # built-in tasks still work
    isolation = ready.json["checks"]["user_code_isolation"]
    assert isolation["available"] is False and "bubblewrap is not installed" in isolation["problem"]
    assert details["build_status"] == "fail"
    assert "apt-get install bubblewrap" in details["build_message"]
    assert "INFER_SANDBOX=none" in details["build_message"]


def test_the_opt_out_runs_user_code_unisolated_and_says_so(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, SANDBOX="none")
    client, headers = api.client, api.headers

    isolation = client.get("/readyz").json["checks"]["user_code_isolation"]
    assert deploy(client, headers, "trusted", whoami_zip())["build_status"] == "success"
    output = client.post("/custom", json={"model": "trusted"}, headers=headers).json["output"]

    assert isolation["kind"] == "none" and "NOT isolated" in isolation["user"]
    assert output["uid"] == os.getuid()  # the service's own user: the documented risk


def test_an_allowed_variable_reaches_user_code_and_nothing_else_does(client_for, monkeypatch):
    monkeypatch.setenv("MODEL_FEATURE_FLAG", "on")
    monkeypatch.setenv("SOMETHING_PRIVATE", "not for models")
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, SANDBOX_ENV_ALLOW="MODEL_FEATURE_FLAG")
    client, headers = api.client, api.headers
    assert deploy(client, headers, "envy", whoami_zip())["build_status"] == "success"

    env = client.post("/custom", json={"model": "envy"}, headers=headers).json["output"]["env"]

    assert env["MODEL_FEATURE_FLAG"] == "on"
    assert "SOMETHING_PRIVATE" not in env and "HF_HOME" in env


@pytest.mark.parametrize("name", ["DATABASE_URL", "INFER_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"])
def test_the_allow_list_refuses_the_services_own_secrets(tmp_path, name):
    with pytest.raises(ValueError, match=name):
        create_app({"DATA_DIR": str(tmp_path), "BOOTSTRAP_KEY": False, "BUILDER": False,
                    "SANDBOX_ENV_ALLOW": f"PATH,{name}"})


def test_the_data_dir_its_database_and_secret_are_owner_only(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    (data_dir / "infer.db").touch(mode=0o644)  # as an older release left them
    app = create_app({"DATA_DIR": str(data_dir), "BOOTSTRAP_KEY": True, "BUILDER": False})
    app.extensions["storage"]  # the local storage created the signing secret

    for path, mode in [(data_dir, 0o700), (data_dir / "infer.db", 0o600), (data_dir / "secret_key", 0o600)]:
        assert stat.S_IMODE(os.stat(path).st_mode) == mode, path
    made_later = data_dir / "uploads"
    assert stat.S_IMODE(os.stat(made_later).st_mode) == 0o700  # the umask covers what comes after
