"""A throwaway HAProxy (Debian's haproxy package) on 127.0.0.1, run from deploy/haproxy.cfg.

The config is the shipped one with its lines marked CHANGE rewritten: the
listening address, the runtime API socket (under the test's folder), the
replicas' `server` lines and, when a test asks, the check intervals. Every
rewrite must match exactly as often as expected, so a change to
deploy/haproxy.cfg that a test relies on fails loudly instead of leaving the
test running on a config it did not mean.
"""

import csv
import io
import os
import re
import socket
import subprocess
import time

from .servers import debian_binary, free_port, stop_process_group

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "deploy", "haproxy.cfg")
BIND_LINE = "bind :8080"
SOCKET_LINE = "stats socket /run/haproxy/admin.sock mode 600 level admin"
SERVER_LINE = re.compile(r"^(\s*)server replica\d+ \S+\n", re.MULTILINE)
DEFAULT_SERVER = re.compile(r"^(\s*default-server check) inter \S+ fall \d+ rise \d+", re.MULTILINE)
BACKEND = "infer"


def _sub_once(pattern, replacement, text: str, what: str) -> str:
    new, found = re.subn(pattern, replacement, text)
    if found != 1:
        raise AssertionError(f"deploy/haproxy.cfg has {found} {what} line(s), expected 1")
    return new


def render_config(port: int, socket_path: str, servers: dict[str, str], checks: str | None = None) -> str:
    """deploy/haproxy.cfg listening on 127.0.0.1:port, its runtime API at socket_path,
    one `server` line per {name: "host:port"}; checks, e.g. "inter 200ms fall 1 rise 1",
    replaces the shipped check intervals."""
    text = open(CONFIG).read()
    text = _sub_once(rf"(?m)^(\s*){re.escape(BIND_LINE)}$", rf"\g<1>bind 127.0.0.1:{port}", text, "`bind :8080`")
    text = _sub_once(rf"(?m)^(\s*){re.escape(SOCKET_LINE)}$",
                     lambda m: f"{m.group(1)}stats socket {socket_path} mode 600 level admin", text, "`stats socket`")
    shipped = list(SERVER_LINE.finditer(text))
    if len(shipped) != 2:
        raise AssertionError(f"deploy/haproxy.cfg has {len(shipped)} `server replicaN` lines, expected 2")
    ours = "".join(f"{shipped[0].group(1)}server {name} {address}\n" for name, address in servers.items())
    at = shipped[0].start()  # nothing before it changes when the shipped lines go
    text = SERVER_LINE.sub("", text)
    text = text[:at] + ours + text[at:]
    if checks is not None:
        text = _sub_once(DEFAULT_SERVER, lambda m: f"{m.group(1)} {checks}", text, "`default-server check`")
    return text


class HAProxy:
    """deploy/haproxy.cfg in front of `servers` ({name: "host:port"}), on a free port."""

    def __init__(self, workdir: str, servers: dict[str, str], checks: str | None = None):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.socket_path = os.path.join(workdir, "admin.sock")
        self.config = os.path.join(workdir, "haproxy.cfg")
        with open(self.config, "w") as out:
            out.write(render_config(self.port, self.socket_path, servers, checks))
        self.log_path = os.path.join(workdir, "haproxy.log")
        self.process = None

    def start(self, timeout: float = 20) -> "HAProxy":
        haproxy = debian_binary("haproxy", "haproxy", "the load balancer of the replica tests")
        checked = subprocess.run([haproxy, "-c", "-f", self.config], capture_output=True, text=True)
        if checked.returncode != 0:
            raise AssertionError(f"haproxy -c rejected the config:\n{checked.stdout}{checked.stderr}")
        self.log = open(self.log_path, "w")
        # -db: in the foreground, so the process we start is haproxy itself.
        self.process = subprocess.Popen([haproxy, "-db", "-f", self.config], stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"haproxy exited: {self.read_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if os.path.exists(self.socket_path):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"haproxy did not listen on {self.port}: {self.read_log()}")

    def read_log(self) -> str:
        return open(self.log_path).read()[-6000:]

    def command(self, line: str) -> str:
        """One command of the runtime API (the stats socket), its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(self.socket_path)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[str, dict]:
        """`show stat` of the replicas: {server name: its row (status, scur, ...)}."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {row["svname"]: row for row in rows
                if row["pxname"] == BACKEND and row["svname"] not in ("BACKEND", "FRONTEND")}

    def set_state(self, server: str, state: str) -> None:
        """ready, drain or maint (`set server infer/<server> state ...`)."""
        answer = self.command(f"set server {BACKEND}/{server} state {state}")
        assert answer.strip() == "", answer

    def wait_status(self, server: str, status: str, timeout: float = 60) -> dict:
        """Until the server is UP, DOWN, DRAIN or MAINT (as `status` says); its row. "UP 1/2"
        (up, one check failed) counts as UP: it is still in the rotation."""
        deadline = time.time() + timeout
        while True:
            row = self.stats()[server]
            if row["status"].split(" ")[0] == status:
                return row
            assert time.time() < deadline, f"{server} stayed {row['status']}, never {status}"
            time.sleep(0.05)

    def wait_idle(self, server: str, timeout: float = 60) -> None:
        """Until no request is in progress on that server (scur 0)."""
        deadline = time.time() + timeout
        while int(self.stats()[server]["scur"] or 0) > 0:
            assert time.time() < deadline, f"{server} kept requests in progress"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGTERM: haproxy's hard stop (SIGUSR1, soft, would wait for open connections).
        stop_process_group(self.process)
        self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
