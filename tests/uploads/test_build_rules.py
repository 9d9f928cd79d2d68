"""What a build may and may not do: an older version never replaces a newer one,
requirements.txt lists packages and nothing else, and an account stays within
its quotas."""

import json
import os
from urllib.parse import urlsplit

import pytest

from core.tables import ModelVersion, UserModel
from web.settings import settings_of

from .helpers import deploy, make_zip, pickle_zip, put_local, upload_url


def _version_id(url: str) -> int:
    return int(urlsplit(url).path.rsplit("/", 1)[1])


def test_an_older_build_finishing_after_a_newer_one_does_not_replace_it(client_for):
    api = client_for()  # no builder thread: the test runs the builds in the order it wants
    app, client, headers = api.app, api.client, api.headers
    old_url, new_url = upload_url(client, headers, "racing"), upload_url(client, headers, "racing")
    assert put_local(client, old_url, pickle_zip("old")).status_code == 200
    assert put_local(client, new_url, pickle_zip("new")).status_code == 200
    builder = app.extensions["builder"]

    builder.build(_version_id(new_url))
    builder.build(_version_id(old_url))  # slower, finishing last

    with app.extensions["db"].sessions() as session:
        assert session.query(UserModel).one().current_version_id == _version_id(new_url)
        old = session.get(ModelVersion, _version_id(old_url))
        assert old.status == "success" and "does not replace it" in old.build_message
    answer = client.post("/custom", json={"model": "racing"}, headers=headers)
    assert answer.json["output"]["greeting"] == "new"


@pytest.mark.parametrize("line,kind", [
    ("-r /proc/self/environ", "includes another file (-r)"),
    ("--index-url http://127.0.0.1:1/simple", "sets the package index (--index-url)"),
    ("./vendor/evil", "is a file path"),
    ("https://example.com/evil-1.0.tar.gz", "is a URL"),
    ("evil @ https://example.com/evil-1.0.whl", "installs from a URL"),
])
def test_requirements_beyond_package_lines_fail_the_build_without_reading_anything(client_for, monkeypatch, line, kind):
    canary = "canary-environ-value-0451"
    monkeypatch.setenv("INFER_TEST_CANARY", canary)  # in /proc/self/environ of the service
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    client, headers = api.client, api.headers

    details = deploy(client, headers, "reqs", pickle_zip(requirements=f"cloudpickle\n{line}\n"))

    assert details["build_status"] == "fail"
    assert f"requirements.txt line 2 {kind}" in details["build_message"]
    log = client.get("/models/reqs/build-log", headers=headers).json["log"]
    for text in (details["build_message"], log):
        assert canary not in text and "PATH=" not in text and line not in text


def test_an_account_holds_at_most_its_models_and_pending_uploads(client_for):
    api = client_for(ACCOUNT_MAX_MODELS=2, ACCOUNT_MAX_PENDING_UPLOADS=3)
    client, alice, bob = api.client, api.headers, api.headers_for("bob")
    upload_url(client, alice, "first")
    upload_url(client, alice, "second")

    third_model = client.post("/upload-url", json={"model_name": "third"}, headers=alice)
    assert third_model.status_code == 403 and "INFER_ACCOUNT_MAX_MODELS" in third_model.json["message"]
    upload_url(client, alice, "second")  # a new version of a model it has is fine...
    pending = client.post("/upload-url", json={"model_name": "first"}, headers=alice)
    assert pending.status_code == 429 and "INFER_ACCOUNT_MAX_PENDING_UPLOADS" in pending.json["message"]
    assert client.post("/upload-url", json={"model_name": "first"}, headers=bob).status_code == 200  # per account


def _big_model(seed: bytes) -> bytes:
    # 600 KB that does not compress, so the stored version takes about that much.
    code = "def load_model(d):\n    return None\ndef call_model(m, i, t):\n    return 'ok'\n"
    return make_zip({"inference.py": code, "blob.bin": os.urandom(600 * 1024) + seed,
                     "config.json": json.dumps({"tasks": ["custom"]})})


def test_a_build_that_would_take_the_account_past_its_stored_bytes_fails_and_keeps_nothing(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, ACCOUNT_MAX_STORED_MB=1)
    app, client, headers = api.app, api.client, api.headers
    assert deploy(client, headers, "big-one", _big_model(b"1"))["build_status"] == "success"

    second = deploy(client, headers, "big-two", _big_model(b"2"))

    assert second["build_status"] == "fail" and "INFER_ACCOUNT_MAX_STORED_MB" in second["build_message"]
    user_models = os.path.join(settings_of(app).data_dir, "user_models")
    assert len(os.listdir(user_models)) == 1  # the failed version's files are gone
    assert client.post("/custom", json={"model": "big-one"}, headers=headers).json["output"] == "ok"
    assert client.delete("/models/big-one", headers=headers).status_code == 200
    assert deploy(client, headers, "big-two", _big_model(b"2"))["build_status"] == "success"


def _wheel(folder, name: str, version: str, source: str) -> None:
    """A pure-Python wheel of one module, written by hand (no build tools needed)."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name}-{version}.dist-info"
    files = {f"{name}.py": source, f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    with zipfile.ZipFile(os.path.join(folder, f"{name}-{version}-py3-none-any.whl"), "w") as wheel:
        for path, text in files.items():
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
            wheel.writestr(path, text)
            record.append(f"{path},sha256={digest},{len(text.encode())}")
        wheel.writestr(f"{dist}/RECORD", "\n".join([*record, f"{dist}/RECORD,,"]) + "\n")


def test_without_install_network_packages_come_from_the_operators_find_links_folder(client_for, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(str(wheels), "tinypkg", "1.0", "VALUE = 42\n")
    os.chmod(tmp_path, 0o755)  # the sandbox's uid reads the operator's folder
    for path in (wheels, *wheels.iterdir()):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, SANDBOX_INSTALL_NETWORK="none",
                     SANDBOX_PIP_FIND_LINKS=str(wheels))
    client, headers = api.client, api.headers
    code = "import tinypkg\ndef load_model(d):\n    return None\ndef call_model(m, i, t):\n    return tinypkg.VALUE\n"

    def model(requirement):
        return make_zip({"inference.py": code, "requirements.txt": requirement,
                         "config.json": json.dumps({"tasks": ["custom"]})})

    assert deploy(client, headers, "from-wheel", model("tinypkg==1.0\n"))["build_status"] == "success"
    assert client.post("/custom", json={"model": "from-wheel"}, headers=headers).json["output"] == 42
    missing = deploy(client, headers, "not-there", model("tinypkg==2.0\n"))
    assert missing["build_status"] == "fail" and "installing requirements.txt failed" in missing["build_message"]
    assert "from versions: 1.0" in missing["build_message"]  # pip looked in the folder, and nowhere else


def test_a_config_json_over_its_limit_fails_the_build_before_it_is_parsed(client_for):
    api = client_for(UPLOAD_MAX_CONFIG_KB=64)
    url = upload_url(api.client, api.headers, "bloated")
    config = json.dumps({"tasks": ["custom"], "description": "x" * 70_000})
    assert put_local(api.client, url, make_zip({"config.json": config, "model.bin": b"ignored"})).status_code == 200
    api.app.extensions["builder"].build(_version_id(url))

    details = api.client.get("/models/bloated", headers=api.headers).json
    assert details["build_status"] == "fail"
    assert "config.json is over 64 KiB (INFER_UPLOAD_MAX_CONFIG_KB)" in details["build_message"]
