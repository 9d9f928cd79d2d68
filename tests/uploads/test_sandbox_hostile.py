"""Uploaded code as an attacker writes it: an inference.py, a pickled model.bin, and a
package whose in-tree build backend runs while pip installs it. Each tries to read
the service's secret, database and environment and another account's model, to
write into the data dir and the service's code, to reach the service's port and
another address (directly, and through the install's proxy), to escape with
namespaces, mounts and ptrace, to fork without bound, and to leave a process
running after its model is deleted. Every attempt must fail; the tests assert on
what the code reported back and on what it left behind."""

import functools
import http.server
import json
import os
import socket
import threading
import time
import uuid

import pytest

from core.tables import ModelVersion, UserModel
from uploads.serving import version_dirs
from web.settings import settings_of

from ..conftest import LiveServer
from . import hostile
from .helpers import deploy, inference_zip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_PROCESSES = 32
AWS_CANARY = "canary-aws-" + uuid.uuid4().hex
INFER_CANARY = "canary-infer-" + uuid.uuid4().hex


def _outside_address() -> str:
    """This host's address on its default route (reachable from the host itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


@pytest.fixture
def outside_listener():
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen(8)
    host = _outside_address()
    with socket.create_connection((host, server.getsockname()[1]), timeout=3):
        pass  # the host itself reaches it: a sandbox that cannot is cut off, not the address
    yield host, server.getsockname()[1]
    server.close()


@pytest.fixture
def package_index(tmp_path):
    """A PEP 503 index on 127.0.0.1 (over plain HTTP) that tests fill with sdists."""
    root = tmp_path / "index"
    (root / "simple" / "hostile-pkg").mkdir(parents=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, server.server_address[1]
    server.shutdown()


@pytest.fixture
def service(client_for, monkeypatch, outside_listener, package_index):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_CANARY)
    monkeypatch.setenv("INFER_TEST_CANARY", INFER_CANARY)
    index_root, index_port = package_index
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{index_port}/simple/")
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, SANDBOX_MAX_PROCESSES=MAX_PROCESSES,
                     SANDBOX_INSTALL_NETWORK="index", SANDBOX_INSTALL_HOSTS=f"127.0.0.1:{index_port}",
                     SANDBOX_ENV_ALLOW="PIP_INDEX_URL")
    app = api.app
    with LiveServer(app) as live:
        client = api.client
        victim = api.headers_for("victim")
        attacker = api.headers_for("attacker")
        assert deploy(client, victim, "victim-model", inference_zip())["build_status"] == "success"
        data_dir = settings_of(app).data_dir
        with app.extensions["db"].sessions() as session:
            victim_version = session.query(UserModel).filter_by(name="victim-model").one().current_version_id
        targets = {
            "secret": os.path.join(data_dir, "secret_key"),
            "database": os.path.join(data_dir, "infer.db"),
            "data_dir": data_dir,
            "other_model_file": os.path.join(version_dirs(data_dir, victim_version)[0], "weights.txt"),
            "service_code_file": os.path.join(ROOT, "app", "config.py"),
            "service_code_write": os.path.join(ROOT, "app", "pwned_by_a_model.py"),
            "service_port": int(live.url.rsplit(":", 1)[1]),
            "outside_host": outside_listener[0],
            "outside_port": outside_listener[1],
            "fork_attempts": 2 * MAX_PROCESSES,
            "marker": "leftover-" + uuid.uuid4().hex,
        }
        for path in (targets["secret"], targets["database"], targets["other_model_file"]):
            assert os.path.isfile(path)  # each target exists: a miss means the sandbox hid it
        yield app, client, attacker, targets, index_root


def _assert_everything_blocked(report: dict, targets: dict, at_install: bool) -> None:
    attempts = ["read_secret", "read_database", "list_data_dir", "read_other_model", "read_service_code",
                "write_data_dir", "write_service_code", "write_own_model_files", "connect_service",
                "connect_outside", "unshare_user_namespace", "mount_tmpfs", "ptrace_attach_pid_1"]
    if at_install:  # the install's only way out is its proxy to the allowed index
        attempts += ["proxy_to_service", "proxy_to_outside"]
    for attempt in attempts:
        assert report[attempt].startswith("blocked"), (attempt, report[attempt])
    text = json.dumps(report)
    assert AWS_CANARY not in text and INFER_CANARY not in text
    assert not [name for name in report["environ"] if name.startswith(("INFER_", "AWS_")) or name == "DATABASE_URL"]
    if os.geteuid() == 0:  # as root, the service gives each sandbox a uid of its own
        assert report["uid"] >= 200_000 and 0 not in report["groups"]
    else:  # as an ordinary user: its uid in a user namespace (see docs/security.md)
        assert report["uid"] == os.getuid()
    assert len(report["capabilities"]) == 5  # inheritable, permitted, effective, bounding, ambient: none
    for line in report["capabilities"]:
        assert line.split()[1] == "0000000000000000", line
    assert report["no_new_privs"] == ["NoNewPrivs:\t1"]
    assert report["forks"] < MAX_PROCESSES and "fork_stopped_by" in report
    assert not os.path.exists(os.path.join(targets["data_dir"], "pwned"))
    assert not os.path.exists(targets["service_code_write"])


def _wait_until(condition, timeout: float = 15):
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def _wait_until_gone(marker: str) -> list[int]:
    return [] if _wait_until(lambda: not hostile.processes_with(marker)) else hostile.processes_with(marker)


@pytest.mark.parametrize("vector", ["inference.py", "model.bin"])
def test_hostile_model_code_is_confined_and_leaves_nothing_behind(service, vector):
    app, client, attacker, targets, _ = service
    archive = hostile.inference_zip(targets) if vector == "inference.py" else hostile.pickle_zip(targets)

    built = deploy(client, attacker, "hostile", archive)

    assert built["build_status"] == "success", built["build_message"]
    assert hostile.processes_with(targets["marker"]) == []  # the build's sandbox died with everything in it
    answer = client.post("/custom", json={"model": "hostile"}, headers=attacker)
    assert answer.status_code == 200, answer.json
    _assert_everything_blocked(answer.json["output"], targets, at_install=False)
    assert _wait_until(lambda: hostile.processes_with(targets["marker"]))  # the worker's leftover runs, for now

    assert client.delete("/models/hostile", headers=attacker).status_code == 200

    assert _wait_until_gone(targets["marker"]) == []


def test_hostile_package_build_backend_is_confined_at_install(service):
    app, client, attacker, targets, index_root = service
    (index_root / "hostile_pkg-0.1.tar.gz").write_bytes(hostile.hostile_sdist(targets))
    (index_root / "simple" / "hostile-pkg" / "index.html").write_text(
        '<a href="../../hostile_pkg-0.1.tar.gz">hostile_pkg-0.1.tar.gz</a>')

    built = deploy(client, attacker, "hostile-package", hostile.package_zip())

    assert built["build_status"] == "success", built["build_message"]
    # pip fetched the package through the install's proxy, and its backend ran in the sandbox.
    log = client.get("/models/hostile-package/build-log", headers=attacker).json["log"]
    assert "hostile-pkg" in log
    answer = client.post("/custom", json={"model": "hostile-package"}, headers=attacker)
    _assert_everything_blocked(answer.json["output"], targets, at_install=True)
    assert "403" in answer.json["output"]["proxy_to_service"]
    assert f"The install network refused: 127.0.0.1:{targets['service_port']}" in log
    assert hostile.processes_with(targets["marker"]) == []  # gone with the install's sandbox
    with app.extensions["db"].sessions() as session:
        version = session.query(ModelVersion).order_by(ModelVersion.id.desc()).first()
    venv = version_dirs(settings_of(app).data_dir, version.id)[1]
    assert os.path.isdir(venv)
    assert client.delete("/models/hostile-package", headers=attacker).status_code == 200
    assert not os.path.exists(os.path.dirname(venv))
