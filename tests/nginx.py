"""A throwaway nginx (Debian's nginx-light) on 127.0.0.1, run from deploy/nginx.conf.

The config is the shipped one with its two template addresses (listen
127.0.0.1:8080, upstream 127.0.0.1:8000) and any other directives the test
names rewritten; every substitution must match exactly as often as expected,
so a change to deploy/nginx.conf that a test relies on fails loudly instead of
leaving the test running on a config it did not mean.
"""

import os
import re
import socket
import subprocess
import time

from .servers import debian_binary, free_port, stop_process_group

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "deploy", "nginx.conf")
LISTEN_PLACEHOLDER = "listen 127.0.0.1:8080;"
UPSTREAM_PLACEHOLDER = "server 127.0.0.1:8000;"


def set_directive(text: str, name: str, value: str, count: int = 1) -> str:
    """Replace the value of every `name ...;` directive line; there must be `count` of them."""
    pattern = re.compile(rf"^(\s*{re.escape(name)}\s+)[^;#\n]+;", re.MULTILINE)
    new, found = pattern.subn(lambda m: f"{m.group(1)}{value};", text)
    if found != count:
        raise AssertionError(f"deploy/nginx.conf has {found} `{name}` directive(s), expected {count}")
    return new


def _replace_once(text: str, old: str, new: str) -> str:
    """Replace the one directive line that is exactly `old` (the header comment quotes it too)."""
    pattern = re.compile(rf"^(\s*){re.escape(old)}", re.MULTILINE)
    new_text, found = pattern.subn(lambda m: m.group(1) + new, text)
    if found != 1:
        raise AssertionError(f"deploy/nginx.conf should have one `{old}` line, found {found}")
    return new_text


class Nginx:
    """deploy/nginx.conf listening on a free port, proxying to `upstream` ("host:port")."""

    def __init__(self, workdir: str, upstream: str, directives: dict | None = None,
                 replacements: dict | None = None):
        """directives: {name: value} or {name: (value, count)}, directive values to rewrite;
        replacements: {old text: (new text, count)}, for lines a directive name alone does not pick."""
        self.dir = workdir
        self.prefix = os.path.join(workdir, "prefix") + "/"
        os.makedirs(self.prefix, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        text = open(CONFIG).read()
        text = _replace_once(text, LISTEN_PLACEHOLDER, f"listen 127.0.0.1:{self.port};")
        text = _replace_once(text, UPSTREAM_PLACEHOLDER, f"server {upstream};")
        for name, value in (directives or {}).items():
            value, count = value if isinstance(value, tuple) else (value, 1)
            text = set_directive(text, name, value, count)
        for old, (new, count) in (replacements or {}).items():
            if text.count(old) != count:
                raise AssertionError(f"deploy/nginx.conf should contain {old!r} {count} time(s)")
            text = text.replace(old, new)
        self.config = os.path.join(workdir, "nginx.conf")
        with open(self.config, "w") as out:
            out.write(text)
        self.log_path = os.path.join(workdir, "nginx.log")
        self.access_log = os.path.join(self.prefix, "access.log")
        self.process = None

    def _command(self, *extra: str) -> list[str]:
        # daemon off: the process we start is the master, so its pid is ours to
        # signal. As root the workers would run as nobody, who cannot enter
        # pytest's 0700 temporary directory (client_body_temp lives there).
        globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
        nginx = debian_binary("nginx", "nginx-light", "the reverse proxy of the proxy tests")
        return [nginx, "-p", self.prefix, "-c", self.config, "-g", globals_, *extra]

    def start(self, timeout: float = 20) -> "Nginx":
        checked = subprocess.run(self._command("-t"), capture_output=True, text=True)
        if checked.returncode != 0:
            raise AssertionError(f"nginx -t rejected the config:\n{checked.stderr}")
        self.log = open(self.log_path, "w")
        # Its own session: if the master ever has to be killed, its workers go with it.
        self.process = subprocess.Popen(self._command(), stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited: {self.read_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"nginx did not listen on {self.port}: {self.read_log()}")

    def read_log(self) -> str:
        return open(self.log_path).read()[-4000:]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # SIGTERM: nginx's fast shutdown (SIGQUIT, graceful, would wait for
        # slow connections a failed test may have left open).
        stop_process_group(self.process)
        self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
