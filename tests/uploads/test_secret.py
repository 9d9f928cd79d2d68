"""The URL-signing secret every worker of one service must share."""

import os
import stat
import threading

from core.settings import Settings
from uploads.storage import load_secret


def test_a_configured_secret_is_used_as_is(tmp_path):
    assert load_secret(Settings(secret_key="configured", data_dir=str(tmp_path))) == b"configured"
    assert not (tmp_path / "secret_key").exists()


def test_a_generated_secret_is_private_and_kept(tmp_path):
    config = Settings(secret_key="", data_dir=str(tmp_path))
    first = load_secret(config)
    assert len(first) == 64
    assert load_secret(config) == first
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no temporary file left behind


def test_workers_starting_together_share_one_secret(tmp_path):
    # gunicorn starts its workers at once on an empty data dir; each must come up
    # (no "file exists" crash) with the same, complete secret.
    config = Settings(secret_key="", data_dir=str(tmp_path))
    start = threading.Barrier(16)
    secrets, errors = [], []

    def worker():
        start.wait()
        try:
            secrets.append(load_secret(config))
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(secrets) == 16 and len(set(secrets)) == 1 and len(secrets[0]) == 64
