"""What the test servers (PostgreSQL, Redis, nginx, HAProxy, gunicorn) share: a free
port on 127.0.0.1, a Debian binary that scripts/test installs, and how to stop one."""

import os
import shutil
import signal
import socket
import subprocess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def debian_binary(name: str, package: str, why: str) -> str:
    """The binary's path. Never a skip when it is missing: the tests that need it are
    the evidence for what they test, so a machine without it must not pass."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if not found:
        raise RuntimeError(f"{name} was not found ({why}): run scripts/test, which installs Debian's {package}.")
    return found


def stop_process_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM to a server started in a session of its own, then, if it has not
    stopped in `timeout` seconds, SIGKILL to its whole process group (the
    master and its workers, nothing else)."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
