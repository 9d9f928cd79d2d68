"""What the test servers (PostgreSQL, Redis, nginx, HAProxy, gunicorn) share: a free
port on 127.0.0.1, and a Debian binary that scripts/test installs."""

import os
import shutil
import socket


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
