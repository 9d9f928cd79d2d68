"""Hostile or broken archives fail their build with a clear message and write nothing outside
the model's folder; the checks run before anything is extracted."""

import io
import json
import os
import struct
import zipfile

import pytest

from uploads.archive import ArchiveLimits, ArchiveRejected, check_archive, extract_archive
from web.settings import settings_of

from .helpers import CONFIG, deploy, make_zip

GOOD_CONFIG = json.dumps(CONFIG)
LIMITS = ArchiveLimits(max_archive_bytes=10**8, max_members=50, max_uncompressed_bytes=10**8, max_ratio=100)


def zip_bomb() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", GOOD_CONFIG)
        archive.writestr("model.bin", b"\0" * 50_000_000)  # ~50 kB compressed, 1000x
    return buffer.getvalue()


def many_small_bombs(count=200, member_bytes=100_000) -> bytes:
    """Members each too small for the per-member ratio check, together a bomb (~500x)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", GOOD_CONFIG)
        for n in range(count):
            archive.writestr(f"part-{n}.bin", b"\0" * member_bytes)
    return buffer.getvalue()


HOSTILE = {
    "zip slip": (make_zip({"config.json": GOOD_CONFIG, "../../escaped.txt": "x"}), "leaving the archive"),
    "absolute path": (make_zip({"config.json": GOOD_CONFIG, "/tmp/absolute-escape.txt": "x"}), "absolute path"),
    "symlink": (make_zip({"config.json": GOOD_CONFIG}, symlinks={"model.bin": "/etc/passwd"}), "symbolic link"),
    "zip bomb": (zip_bomb(), "zip bomb"),
    "many small bombs": (many_small_bombs(), "zip bomb"),
    "missing config.json": (make_zip({"model.bin": b"x"}), "config.json is missing"),
    "invalid JSON": (make_zip({"config.json": "{not json", "model.bin": b"x"}), "not valid JSON"),
    "unknown task": (make_zip({"config.json": json.dumps({"tasks": ["mind-reading"]}), "model.bin": b"x"}), "unknown tasks"),
    "no tasks": (make_zip({"config.json": json.dumps({"description": "x"}), "model.bin": b"x"}), "needs \"tasks\""),
    "no model": (make_zip({"config.json": GOOD_CONFIG}), "No model found"),
    "not a zip": (b"this is not a zip file at all", "not a zip"),
}


@pytest.fixture
def service(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    return api.app, api.client, api.headers


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archive_fails_the_build_with_a_clear_message(service, tmp_path, case):
    app, client, headers = service
    archive, words = HOSTILE[case]
    before = set(os.listdir("/tmp"))

    details = deploy(client, headers, "hostile", archive)

    assert details["build_status"] == "fail"
    assert words in details["build_message"], details["build_message"]
    assert "escaped.txt" not in os.listdir(tmp_path.parent) and "absolute-escape.txt" not in set(os.listdir("/tmp")) - before
    user_models = os.path.join(settings_of(app).data_dir, "user_models")
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


def test_an_oversized_upload_is_refused_at_the_put(client_for):
    from .helpers import put_local, upload_url

    api = client_for(UPLOAD_MAX_BYTES=1000)
    client, headers = api.client, api.headers
    response = put_local(client, upload_url(client, headers, "big"), b"x" * 5000)
    assert response.status_code == 413
    assert "INFER_UPLOAD_MAX_BYTES" in response.json["message"]


def write(tmp_path, data: bytes) -> str:
    path = tmp_path / "upload.zip"
    path.write_bytes(data)
    return str(path)


def empty_members_zip(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(count):
            archive.writestr(str(n), b"")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def zip64_members():
    """70,000 empty members: more than the 16-bit count holds, so zipfile writes ZIP64 end records."""
    return empty_members_zip(70_000)


def forbid_zipfile(monkeypatch):
    """From here on, any zipfile.ZipFile call (parsing the archive) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("zipfile parsed an archive that should have been refused before")

    monkeypatch.setattr("uploads.archive.zipfile.ZipFile", refuse)


def test_many_small_members_that_together_expand_too_much_are_a_zip_bomb(tmp_path):
    path = write(tmp_path, many_small_bombs())
    limits = ArchiveLimits(max_archive_bytes=10**8, max_members=10_000, max_uncompressed_bytes=10**8, max_ratio=100)
    with pytest.raises(ArchiveRejected, match=r"The archive expands \d+x .*INFER_UPLOAD_MAX_RATIO"):
        check_archive(path, limits)


def test_a_normal_model_archive_passes_the_ratio_checks(tmp_path):
    vocabulary = "\n".join(f"token{n}" for n in range(100_000))  # text: compresses several times
    files = {
        "config.json": GOOD_CONFIG,
        "tokenizer_config.json": json.dumps({"model_max_length": 512, "do_lower_case": True}),
        "vocab.txt": vocabulary,
        "model.safetensors": os.urandom(3_000_000),  # weights barely compress
    }
    path = write(tmp_path, make_zip(files))

    members = check_archive(path, LIMITS)

    assert sorted(info.filename for info in members) == sorted(files)


def test_a_central_directory_claiming_too_many_members_is_refused_before_zipfile_reads_it(
    tmp_path, zip64_members, monkeypatch
):
    path = write(tmp_path, zip64_members)
    forbid_zipfile(monkeypatch)
    limits = ArchiveLimits(max_archive_bytes=10**8, max_members=50, max_uncompressed_bytes=10**8, max_ratio=100)
    with pytest.raises(ArchiveRejected, match=r"has 70000 members; the limit is 50 \(INFER_UPLOAD_MAX_MEMBERS\)"):
        check_archive(path, limits)


def test_an_understated_member_count_is_caught_by_walking_the_directory(tmp_path, monkeypatch):
    data = bytearray(empty_members_zip(200))
    # The end record's two entry counts (this disk, total) claim 1 member.
    struct.pack_into("<2H", data, len(data) - 22 + 8, 1, 1)
    path = write(tmp_path, bytes(data))
    forbid_zipfile(monkeypatch)
    with pytest.raises(ArchiveRejected, match=r"more than 50 members.*INFER_UPLOAD_MAX_MEMBERS"):
        check_archive(path, LIMITS)


def test_zip64_end_records_are_read_and_agree_with_zipfile(tmp_path, zip64_members):
    path = write(tmp_path, zip64_members)
    limits = ArchiveLimits(max_archive_bytes=10**8, max_members=70_000, max_uncompressed_bytes=10**8, max_ratio=100)
    assert len(check_archive(path, limits)) == 70_000


def lengthen_last_entry_name(data: bytes) -> bytes:
    damaged = bytearray(data)
    struct.pack_into("<H", damaged, data.rfind(b"PK\x01\x02") + 28, 200)  # its file name length
    return bytes(damaged)


@pytest.mark.parametrize(
    "damage,words",
    [
        pytest.param(lambda data: data.replace(b"PK\x01\x02", b"XX\x01\x02", 1), "entry 1 is damaged",
                     id="entry signature"),
        pytest.param(lambda data: data[:-22] + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 2, 2, 10**6, 0, 0),
                     "claims 1000000 bytes", id="directory larger than the file"),
        pytest.param(lengthen_last_entry_name, "entry 2 runs past", id="entry past the directory's end"),
    ],
)
def test_a_malformed_central_directory_is_refused_before_zipfile_reads_it(tmp_path, monkeypatch, damage, words):
    data = make_zip({"config.json": GOOD_CONFIG, "model.bin": b"x"})
    path = write(tmp_path, damage(data))
    forbid_zipfile(monkeypatch)
    with pytest.raises(ArchiveRejected, match=f"not a valid zip archive: .*{words}"):
        check_archive(path, LIMITS)
