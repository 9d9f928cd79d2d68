"""A throwaway PostgreSQL server (Debian's postgresql package) on 127.0.0.1.

initdb refuses to run as root, so as root the server runs as the `postgres` user.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

from .servers import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise RuntimeError(
        f"PostgreSQL's {name} was not found; install Debian's postgresql package (scripts/test does)."
    )


class PostgresServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="infer-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.user = "postgres" if self.as_root else os.environ.get("USER", "postgres")

    def _run(self, *args, **kwargs):
        command = list(args)
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)

    def start(self):
        if self.as_root:
            shutil.chown(self.dir, user="postgres")
        self._run(_bin("initdb"), "-D", self.data, "-A", "trust", "-U", self.user, "--no-sync")
        self.resume()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("PostgreSQL did not start")

    def pause(self):
        """Stop the server, keeping its data (a blip: resume() starts it again)."""
        self._run(_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop")

    def resume(self):
        self._run(
            _bin("pg_ctl"), "-D", self.data, "-w", "-t", "60", "-l", os.path.join(self.dir, "log"),
            "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir} -F", "start",
        )

    def new_database(self) -> str:
        """A fresh database per test, so tests never see each other's rows."""
        name = "t_" + uuid.uuid4().hex[:12]
        self._run(_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name)
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self):
        try:
            self._run(_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
