"""The sandbox as a service that does not run as root gets it: bwrap in a user
namespace, the service's uid mapped to itself, and otherwise the same walls."""

import json
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from sandbox import seccomp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOBODY = 65534

# Run by Debian's Python as an ordinary user: start a sandbox and report what it saw.
CHILD = r'''
import json, subprocess, sys
sys.path.insert(0, __ROOT__)
from sandbox.runner import Bind, Job, Limits, Sandbox

box = Sandbox()
problem = box.problem()
if problem:
    print(json.dumps({"problem": problem}))
    sys.exit()
inside = """
import ctypes, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
try:
    socket.create_connection(("1.1.1.1", 443), timeout=3)
    network = "open"
except OSError as exc:
    network = str(exc)
open("/out/made-inside", "w").close()
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
print(json.dumps({
    "uid": os.getuid(),
    "root": sorted(os.listdir("/")), "env": sorted(os.environ), "network": network,
    "unshare": libc.unshare(0x10000000), "cap_eff": status["CapEff"], "no_new_privs": status["NoNewPrivs"],
    "seccomp": status["Seccomp"], "pids": sorted(p for p in os.listdir("/proc") if p.isdigit()),
}))
"""
job = Job(["/usr/bin/python3", "-c", inside], [Bind(__OUT__, "/out", writable=True)], uid=0,
          limits=Limits(1 << 30, 64, 30, 256, 1 << 24, 1 << 24))
process = box.spawn(job, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
print(json.dumps({"privileged": box.privileged, "output": process.communicate(timeout=60)[0]}))
'''.replace("__ROOT__", repr(ROOT))


def child(out: str) -> str:
    return CHILD.replace("__OUT__", repr(out))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start the test's ordinary user; the service tests cover this mode then")
def test_a_service_running_as_an_ordinary_user_gets_a_user_namespace_sandbox(request):
    assert os.path.exists("/usr/bin/python3"), "Debian's python3 is needed to act as an ordinary user's service"
    # Where the sandbox writes: a folder the ordinary user owns and can reach
    # (pytest's own tmp folders are root's, 0700).
    out = pathlib.Path(tempfile.mkdtemp(prefix="sandbox-out-", dir="/tmp"))
    os.chown(out, NOBODY, NOBODY)
    request.addfinalizer(lambda: shutil.rmtree(out, ignore_errors=True))
    done = subprocess.run([shutil.which("setpriv"), f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           "/usr/bin/python3", "-c", child(str(out))], capture_output=True, text=True, timeout=120,
                          cwd="/", env={"PATH": "/usr/bin:/bin", "SECRET_OF_THE_SERVICE": "hunter2"})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert "problem" not in result, result
    assert result["output"].startswith("{"), result["output"]
    seen = json.loads(result["output"])

    assert result["privileged"] is False
    assert seen["uid"] == NOBODY
    assert os.stat(out / "made-inside").st_uid == NOBODY  # on the host too: the service's uid, never root
    assert "work" not in seen["root"] and "root" not in seen["root"]  # none of the host's other files
    assert "SECRET_OF_THE_SERVICE" not in seen["env"]
    assert "unreachable" in seen["network"]
    assert seen["unshare"] == -1  # no nested user namespace
    assert seen["cap_eff"] == "0000000000000000" and seen["no_new_privs"] == "1" and seen["seccomp"] == "2"
    assert len(seen["pids"]) <= 3  # its own PID namespace: the reaper, the command (and the listing's own)


def test_the_filter_is_refused_for_an_architecture_it_does_not_know():
    with pytest.raises(seccomp.UnsupportedArchitecture):
        seccomp.build_filter("riscv64")
    assert len(seccomp.build_filter("aarch64")) % 8 == 0  # whole sock_filter instructions


def test_service_packages_installed_under_tmp_stay_visible_over_the_private_tmp(monkeypatch, tmp_path):
    # A checkout under /tmp (CI clones there) has its venv's packages there too.
    import sandbox.runner
    from sandbox import Job, Limits, Sandbox

    packages = tempfile.mkdtemp(prefix="site-packages-", dir="/tmp")
    os.chmod(packages, 0o755)
    pathlib.Path(packages, "marker.txt").write_text("visible")
    os.chmod(os.path.join(packages, "marker.txt"), 0o644)
    real = sandbox.runner.system_binds
    monkeypatch.setattr(sandbox.runner, "system_binds", lambda: [*real(), ("ro", packages, packages)])
    box = Sandbox()
    try:
        job = Job(["/bin/sh", "-c", f"cat {packages}/marker.txt && touch /tmp/writable && echo ok"], [],
                  uid=box.uid_for(1), limits=Limits(1 << 30, 64, 30, 256, 1 << 24, 1 << 24))
        process = box.spawn(job, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = process.communicate(timeout=60)[0]
    finally:
        shutil.rmtree(packages, ignore_errors=True)

    assert output == "visibleok\n", output
