"""Hostile or broken archives fail their build with a clear message and write nothing outside
the model's folder; the checks run before anything is extracted."""

import io
import json
import os
import zipfile

import pytest

from uploads.archive import ArchiveLimits, ArchiveRejected, check_archive, extract_archive

from ..conftest import new_key
from .helpers import CONFIG, deploy, make_zip

GOOD_CONFIG = json.dumps(CONFIG)
LIMITS = ArchiveLimits(max_archive_bytes=10**8, max_members=50, max_uncompressed_bytes=10**8, max_ratio=100)


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", GOOD_CONFIG)
        archive.writestr("model.bin", b"\0" * 50_000_000)  # ~50 kB compressed, 1000x
    return buffer.getvalue()


HOSTILE = {
    "zip slip": (make_zip({"config.json": GOOD_CONFIG, "../../escaped.txt": "x"}), "leaving the archive"),
    "absolute path": (make_zip({"config.json": GOOD_CONFIG, "/tmp/absolute-escape.txt": "x"}), "absolute path"),
    "symlink": (make_zip({"config.json": GOOD_CONFIG}, symlinks={"model.bin": "/etc/passwd"}), "symbolic link"),
    "zip bomb": (zip_bomb(), "zip bomb"),
    "missing config.json": (make_zip({"model.bin": b"x"}), "config.json is missing"),
    "invalid JSON": (make_zip({"config.json": "{not json", "model.bin": b"x"}), "not valid JSON"),
    "unknown task": (make_zip({"config.json": json.dumps({"tasks": ["mind-reading"]}), "model.bin": b"x"}), "unknown tasks"),
    "no tasks": (make_zip({"config.json": json.dumps({"description": "x"}), "model.bin": b"x"}), "needs \"tasks\""),
    "no model": (make_zip({"config.json": GOOD_CONFIG}), "No model found"),
    "not a zip": (b"this is not a zip file at all", "not a zip"),
}


@pytest.fixture
def service(make_app):
    app = make_app(BUILDER=True, BUILD_POLL_S=0.2)
    return app, app.test_client(), {"x-api-key": new_key(app, "alice")}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archive_fails_the_build_with_a_clear_message(service, tmp_path, case):
    app, client, headers = service
    archive, words = HOSTILE[case]
    before = set(os.listdir("/tmp"))

    details = deploy(client, headers, "hostile", archive)

    assert details["build_status"] == "fail"
    assert words in details["build_message"], details["build_message"]
    assert "escaped.txt" not in os.listdir(tmp_path.parent) and "absolute-escape.txt" not in set(os.listdir("/tmp")) - before
    user_models = os.path.join(app.config["DATA_DIR"], "user_models")
    assert not os.path.exists(user_models) or os.listdir(user_models) == []  # a failed build leaves no files
    assert client.post("/custom", json={"model": "hostile"}, headers=headers).status_code == 404


def test_checks_refuse_before_extracting_anything(tmp_path):
    path = tmp_path / "slip.zip"
    path.write_bytes(HOSTILE["zip slip"][0])
    destination = tmp_path / "out"
    with pytest.raises(ArchiveRejected):
        extract_archive(str(path), str(destination), LIMITS)
    assert not destination.exists()


@pytest.mark.parametrize(
    "limits,words",
    [
        (ArchiveLimits(100, 50, 10**8, 100), "INFER_UPLOAD_MAX_BYTES"),
        (ArchiveLimits(10**8, 1, 10**8, 100), "INFER_UPLOAD_MAX_MEMBERS"),
        (ArchiveLimits(10**8, 50, 10, 100), "INFER_UPLOAD_MAX_UNCOMPRESSED_BYTES"),
    ],
)
def test_each_limit_is_a_named_setting(tmp_path, limits, words):
    path = tmp_path / "ok.zip"
    path.write_bytes(make_zip({"config.json": GOOD_CONFIG, "model.bin": b"x" * 1000}))
    with pytest.raises(ArchiveRejected, match=words):
        check_archive(str(path), limits)


def test_an_oversized_upload_is_refused_at_the_put(make_app):
    from .helpers import put_local, upload_url

    app = make_app(UPLOAD_MAX_BYTES=1000)
    client, headers = app.test_client(), {"x-api-key": new_key(app, "a")}
    response = put_local(client, upload_url(client, headers, "big"), b"x" * 5000)
    assert response.status_code == 413
    assert "INFER_UPLOAD_MAX_BYTES" in response.json["message"]
