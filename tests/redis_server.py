"""A throwaway Redis server (Debian's redis-server package) on 127.0.0.1.

Nothing is saved to disk: a restart (stop, then start on the same port) comes
back empty, as a Redis without persistence does after a crash.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

from .servers import free_port


class RedisServer:
    def __init__(self):
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not os.path.exists(self.binary):
            raise RuntimeError("redis-server was not found; install Debian's redis-server package (scripts/test does).")
        self.dir = tempfile.mkdtemp(prefix="infer-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(os.path.join(self.dir, "log"), "ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.dir}/log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("Redis did not start")

    def stop(self) -> None:
        """Stop the server (its data is gone); start() brings it back on the same port."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
