"""The only way out of an install sandbox: an HTTP(S) proxy on a unix socket that
reaches nothing but the hosts the operator allowed (INFER_SANDBOX_INSTALL_HOSTS).

An install has its own network namespace like every sandbox; a relay inside it
(uploads/install_inside.py) turns pip's proxy connections into connections to
this socket, which is bind-mounted in. So package code run by pip can fetch
from the index and nothing else: not the service's port, not a database on
localhost, not a cloud metadata address, not the internet at large.

HTTPS goes through CONNECT host:port (the proxy never sees inside the TLS);
plain HTTP (a local mirror) is forwarded one request per connection.
"""

import logging
import os
import selectors
import socket
import threading
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
IDLE_TIMEOUT_S = 120
MAX_CONNECTIONS = 32


def parse_allowed(entries: str) -> set[tuple[str, int]]:
    """"host" (port 443) or "host:port", comma-separated."""
    allowed = set()
    for entry in (e.strip().lower() for e in entries.split(",")):
        if not entry:
            continue
        host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "443")
        allowed.add((host, int(port)))
    return allowed


class EgressProxy:
    def __init__(self, socket_path: str, allowed: set[tuple[str, int]], connect_timeout_s: float = 15):
        self.socket_path = socket_path
        self.allowed = allowed
        self.connect_timeout_s = connect_timeout_s
        self.refused: list[str] = []  # host:port asked for and refused, for the build log
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(socket_path)
        # The sandbox's user must be able to connect; the socket's folder is
        # the service's own (0700), so no one else on the host can.
        os.chmod(socket_path, 0o666)
        self._listener.listen(16)
        self._closed = False
        threading.Thread(target=self._accept, name="egress-proxy", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        try:
            client.settimeout(30)
            head, rest = _read_head(client)
            method, target = head.split(b" ", 2)[:2]
            method = method.decode("latin-1").upper()
            target = target.decode("latin-1")
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                host, port = host.strip("[]").lower(), int(port or 443)
            else:
                url = urlsplit(target)
                if url.scheme != "http" or not url.hostname:
                    return _answer(client, 400, "Send https through CONNECT, http as an absolute URL.")
                host, port = url.hostname.lower(), url.port or 80
            if (host, port) not in self.allowed:
                self.refused.append(f"{host}:{port}")
                log.info("install network: refused %s:%s", host, port)
                return _answer(client, 403, f"{host}:{port} is not an allowed package index "
                                            "(INFER_SANDBOX_INSTALL_HOSTS).")
            try:
                upstream = socket.create_connection((host, port), timeout=self.connect_timeout_s)
            except OSError as exc:
                return _answer(client, 502, f"cannot reach {host}:{port}: {exc}")
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.sendall(_origin_form(head, url) + rest)
                rest = b""
            if rest:
                upstream.sendall(rest)
            _pipe(client, upstream)
        except (OSError, ValueError):
            pass
        finally:
            client.close()
            if upstream is not None:
                upstream.close()
            self._slots.release()


def _read_head(client: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk or len(data) > MAX_HEAD_BYTES:
            raise ValueError("no complete request head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _origin_form(head: bytes, url) -> bytes:
    """The request as the origin server expects it: a path, no proxy headers,
    and one request per connection (the next may be for another host)."""
    lines = head.split(b"\r\n")
    method, _, version = lines[0].split(b" ", 2)
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    kept = [line for line in lines[1:]
            if not line.lower().startswith((b"proxy-", b"connection:", b"keep-alive:"))]
    return b"\r\n".join([method + b" " + path.encode() + b" " + version, *kept, b"Connection: close", b"", b""])


def _answer(client: socket.socket, status: int, message: str) -> None:
    body = (message + "\n").encode()
    reason = {400: "Bad Request", 403: "Forbidden", 502: "Bad Gateway"}[status]
    client.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                   f"Connection: close\r\n\r\n".encode() + body)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while True:
            ready = selector.select(IDLE_TIMEOUT_S)
            if not ready:
                return
            for key, _ in ready:
                data = key.fileobj.recv(65536)
                if not data:
                    return
                key.data.sendall(data)
