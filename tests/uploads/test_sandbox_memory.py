"""One account's model holding memory that no process's size shows (a memfd, a
System V shared memory segment) or forking without end, next to another
account's model on the same service, through HTTP.

Each sandboxed process tree has a control group of its own (sandbox/cgroups.py):
the hog's tree is stopped at INFER_WORKER_MEMORY_MB, its request fails saying
so, the service's own memory does not grow with it, the other account is
served, and the group is gone afterwards. Where no control group is to be had,
the fallback refuses memfd_create and System V shared memory outright."""

import contextlib
import io
import json
import os
import tarfile

import pytest
import requests

from core.tables import UserModel

from ..conftest import LiveServer
from . import hostile
from .helpers import deploy, inference_zip, make_zip

MEMORY_MB = 256
HOG_MB = 768  # three times the limit: without a control group all of it would be held
MAX_PROCESSES = 32
LIMIT_MESSAGE = f"went over its memory limit of {MEMORY_MB} MiB (INFER_WORKER_MEMORY_MB) and was stopped"


def service_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def worker_of(app, model_name: str):
    """The WorkerProcess serving a loaded user model (after a first call)."""
    with app.extensions["db"].sessions() as session:
        version_id = session.query(UserModel).filter_by(name=model_name).one().current_version_id
    return app.extensions["models"].cache.peek(f"user-{version_id}").model


@contextlib.contextmanager
def running_service(client_for, **settings):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, WORKER_MEMORY_MB=MEMORY_MB,
                     SANDBOX_MAX_PROCESSES=MAX_PROCESSES, **settings)
    victim, attacker = api.headers_for("victim"), api.headers_for("attacker")
    assert deploy(api.client, victim, "steady", inference_zip())["build_status"] == "success"
    assert deploy(api.client, attacker, "hog", hostile.resource_attacks_zip())["build_status"] == "success"
    with LiveServer(api.app) as live:
        yield api.app, live.url, victim, attacker


@pytest.fixture
def service(client_for):
    with running_service(client_for) as running:
        yield running


def post(url: str, headers: dict, model: str, **fields) -> requests.Response:
    return requests.post(url + "/custom", json={"model": model, **fields}, headers=headers, timeout=120)


def assert_victim_served(url: str, victim: dict) -> None:
    assert post(url, victim, "steady", numbers=[2, 3]).json()["output"] == {"sum": 5}
    assert requests.get(url + "/healthz", timeout=30).status_code == 200


@pytest.mark.parametrize("attack", ["memfd", "shm"])
def test_memory_outside_the_address_space_stops_the_hog_and_spares_the_service(service, attack):
    app, url, victim, attacker = service
    assert post(url, attacker, "hog").json()["output"]["ok"] is True  # its worker runs
    group = worker_of(app, "hog").process.sandbox_group
    assert all(os.path.isdir(folder) for folder in group.folders)
    rss_before = service_rss_bytes()

    answer = post(url, attacker, "hog", attack=attack, mb=HOG_MB)

    assert answer.status_code == 502, answer.text
    assert LIMIT_MESSAGE in answer.json()["message"]
    assert service_rss_bytes() - rss_before < HOG_MB * 2**20 // 8  # the hog's memory was never the service's
    assert group.oom_kills() >= 1
    assert not any(os.path.exists(folder) for folder in group.folders)  # removed with its tree
    assert_victim_served(url, victim)
    assert post(url, attacker, "hog").json()["output"]["ok"] is True  # a fresh worker, in a fresh group


def test_a_fork_bomb_is_bounded_by_its_trees_process_limit(client_for):
    # uids of its own: RLIMIT_NPROC counts a uid's processes host-wide, and other
    # tests' workers of the same version number run under the default ones.
    with running_service(client_for, SANDBOX_UID_BASE=450_000, SANDBOX_UID_COUNT=1000) as running:
        app, url, victim, attacker = running
        _fork_bomb(app, url, victim, attacker)


def _fork_bomb(app, url, victim, attacker):
    report = post(url, attacker, "hog", attack="fork-bomb", attempts=4 * MAX_PROCESSES).json()["output"]

    assert report["refused"] and report["forks"] < MAX_PROCESSES
    group = worker_of(app, "hog").process.sandbox_group
    assert group.forks_refused() >= 1  # pids.max refused it (bwrap's two count: it binds before RLIMIT_NPROC)
    assert len(group.processes()) <= MAX_PROCESSES
    assert_victim_served(url, victim)
    assert requests.delete(url + "/models/hog", headers=attacker, timeout=60).status_code == 200
    assert not any(os.path.exists(folder) for folder in group.folders)  # every child went with it


def test_a_build_whose_model_goes_over_its_memory_fails_saying_so(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, WORKER_MEMORY_MB=MEMORY_MB)
    source = hostile.RESOURCE_ATTACKS + f"\ndef load_model(model_dir):\n    return _hold_memfd({HOG_MB})\n"
    archive = make_zip({"inference.py": source, "config.json": json.dumps({"tasks": ["custom"]})})

    built = deploy(api.client, api.headers, "hog-at-load", archive)

    assert built["build_status"] == "fail"
    assert LIMIT_MESSAGE in built["build_message"]
    assert api.client.get("/healthz").status_code == 200


def _sdist_holding_memory(megabytes: int) -> bytes:
    """hog_pkg-0.1.tar.gz: its build backend fills a memfd while pip installs it."""
    backend = (f"import os\n\ndef get_requires_for_build_wheel(config_settings=None):\n    return []\n\n"
               f"def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
               f"    fd = os.memfd_create('hog')\n    for _ in range({megabytes // 8}):\n"
               f"        os.write(fd, b'x' * (8 << 20))\n    raise RuntimeError('held it all')\n")
    files = {"pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
                               '[project]\nname = "hog-pkg"\nversion = "0.1"\n',
             "PKG-INFO": "Metadata-Version: 2.1\nName: hog-pkg\nVersion: 0.1\n", "backend.py": backend}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            info = tarfile.TarInfo(f"hog_pkg-0.1/{name}")
            info.size = len(text.encode())
            archive.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


def test_an_install_that_goes_over_its_memory_fails_saying_so(client_for, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "hog_pkg-0.1.tar.gz").write_bytes(_sdist_holding_memory(1024))
    os.chmod(wheels, 0o755)
    os.chmod(wheels / "hog_pkg-0.1.tar.gz", 0o644)
    for parent in [tmp_path, *tmp_path.parents]:  # the sandbox's uid must reach the folder
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, WORKER_MEMORY_MB=512, SANDBOX_INSTALL_NETWORK="none",
                     SANDBOX_PIP_FIND_LINKS=str(wheels))
    code = "def load_model(d):\n    return None\ndef call_model(m, i, t):\n    return {}\n"
    archive = make_zip({"inference.py": code, "requirements.txt": "hog-pkg==0.1\n",
                        "config.json": json.dumps({"tasks": ["custom"]})})

    built = deploy(api.client, api.headers, "hog-at-install", archive)

    assert built["build_status"] == "fail"
    assert ("installing requirements.txt went over its memory limit of 512 MiB (INFER_WORKER_MEMORY_MB) "
            "and was stopped") in built["build_message"]


def test_without_a_control_group_memfd_and_shared_memory_are_refused(client_for):
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2, WORKER_MEMORY_MB=MEMORY_MB, SANDBOX_CGROUP="off")
    limits = api.client.get("/readyz").json["checks"]["user_code_isolation"]["resource_limits"]
    assert deploy(api.client, api.headers, "hog", hostile.resource_attacks_zip())["build_status"] == "success"

    memfd = api.client.post("/custom", json={"model": "hog", "attack": "memfd", "mb": 64}, headers=api.headers)
    shm = api.client.post("/custom", json={"model": "hog", "attack": "shm", "mb": 64}, headers=api.headers)

    assert memfd.json["output"]["memfd"].startswith("refused: PermissionError: errno 1"), memfd.json
    assert shm.json["output"]["shm"].startswith("refused: PermissionError: errno 1"), shm.json
    assert limits["enforcement"] == "none" and limits["why"] == "INFER_SANDBOX_CGROUP=off"
    assert "memfd_create and System V shared memory are denied" in limits["memory"]


def test_readyz_says_which_enforcement_holds_and_its_limits(client_for):
    api = client_for(WORKER_MEMORY_MB=MEMORY_MB, SANDBOX_MAX_PROCESSES=MAX_PROCESSES)

    limits = api.client.get("/readyz").json["checks"]["user_code_isolation"]["resource_limits"]

    assert limits["enforcement"] in ("cgroup v1", "cgroup v2")  # this machine has a writable v1 hierarchy
    assert limits["memory_mb"] == MEMORY_MB and limits["max_processes"] == MAX_PROCESSES
    assert "memfd" in limits["memory"] and "pids.max" in limits["processes"]
