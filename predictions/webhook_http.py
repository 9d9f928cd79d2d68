"""One webhook call: an HTTP POST with a deadline for the whole call (and one
GET of a file an account names by URL, an image to add to a dataset, under the
same deadline and with a bound on its size).

http.client's timeout bounds each read, not the call: an endpoint that sends
one byte of its answer every few seconds never trips it, and held a thread
almost without limit (issue 22). Here every blocking step (connect, the TLS
handshake, each send, each read) waits at most what is left of one deadline,
so the call ends by then whatever the endpoint does. Only what a webhook needs
is spoken: one request with Connection: close, an answer's status line and
headers, and at most MAX_ANSWER_BYTES of its body (read, then dropped).
"""

import socket
import ssl
import time

# The most of an answer read: its headers must end within it; past it the
# body is not read (the status is what counts).
MAX_ANSWER_BYTES = 64 * 1024


class CallFailed(OSError):
    """The call did not get an HTTP answer: the message says what happened."""


class _Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left (a socket timeout); TimeoutError once none is."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError(self.message())
        return left

    def message(self) -> str:
        return f"no complete answer within INFER_WEBHOOK_TIMEOUT_S ({self.seconds:g} s)"


def post(scheme: str, host: str, port: int, address: str, target: str, headers: dict, body: bytes,
         deadline_s: float) -> int:
    """POST `body` to `target` on `address` (the host's checked address), by
    HTTPS with the certificate checked against `host` when scheme is https; the
    answer's HTTP status. Raises OSError (TimeoutError, CallFailed, ssl errors)."""
    deadline = _Deadline(deadline_s)
    try:
        sock = socket.create_connection((address, port), timeout=deadline.left())
        try:
            if scheme == "https":
                sock.settimeout(deadline.left())  # bounds the whole handshake (Python >= 3.5)
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            _send(sock, _request(host, port, target, headers, body), deadline)
            return _read_status(sock, deadline)
        finally:
            sock.close()
    except TimeoutError:  # a step ran out of the time left: say which limit
        raise TimeoutError(deadline.message()) from None


def get(scheme: str, host: str, port: int, address: str, target: str, headers: dict, deadline_s: float,
        max_bytes: int) -> tuple[int, bytes]:
    """GET `target` on `address` as post() does; (the answer's status, its body). An
    HTTP/1.0 request: the answer comes whole, not chunked, and ends with the
    connection. A body past `max_bytes` raises CallFailed, read no further."""
    deadline = _Deadline(deadline_s)
    try:
        sock = socket.create_connection((address, port), timeout=deadline.left())
        try:
            if scheme == "https":
                sock.settimeout(deadline.left())
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            _send(sock, _request(host, port, target, headers, b"", method="GET", version="1.0"), deadline)
            head, body = _read_head(sock, deadline, b"")
            status = _status(head.split(b"\r\n", 1)[0])
            declared = _content_length(head, None)
            if declared is not None and declared > max_bytes:
                raise CallFailed(f"the answer is {declared} bytes, over the limit of {max_bytes}")
            while declared is None or len(body) < declared:
                if len(body) > max_bytes:
                    raise CallFailed(f"the answer is over the limit of {max_bytes} bytes")
                sock.settimeout(deadline.left())
                chunk = sock.recv(64 * 1024)
                if not chunk:
                    break
                body += chunk
            if len(body) > max_bytes:
                raise CallFailed(f"the answer is over the limit of {max_bytes} bytes")
            return status, body
        finally:
            sock.close()
    except TimeoutError:
        raise TimeoutError(deadline.message()) from None


def _request(host: str, port: int, target: str, headers: dict, body: bytes, method: str = "POST",
             version: str = "1.1") -> bytes:
    lines = [f"{method} {target} HTTP/{version}", f"Host: {host if port in (80, 443) else f'{host}:{port}'}",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _send(sock, data: bytes, deadline: _Deadline) -> None:
    view = memoryview(data)
    while view:
        sock.settimeout(deadline.left())
        view = view[sock.send(view):]


def _read_status(sock, deadline: _Deadline) -> int:
    """The answer's status, once its headers have all come (past any interim
    1xx answer); then as much of its body as comes before the deadline, up to
    MAX_ANSWER_BYTES (a server may mind being cut off mid-answer; nothing here
    needs the body)."""
    received = b""
    while True:
        head, received = _read_head(sock, deadline, received)
        status = _status(head.split(b"\r\n", 1)[0])
        if not 100 <= status < 200:
            break
    wanted = 0 if status in (204, 304) else min(_content_length(head), MAX_ANSWER_BYTES)
    try:
        while len(received) < wanted:
            sock.settimeout(deadline.left())
            chunk = sock.recv(16 * 1024)
            if not chunk:
                break
            received += chunk
    except OSError:  # the deadline or a reset while reading the body: the status stands
        pass
    return status


def _read_head(sock, deadline: _Deadline, received: bytes) -> tuple[bytes, bytes]:
    """(an answer's status line and headers, what came after them)."""
    answer = bytearray(received)
    while b"\r\n\r\n" not in answer:
        if len(answer) > MAX_ANSWER_BYTES:
            raise CallFailed(f"the answer's headers are longer than {MAX_ANSWER_BYTES} bytes")
        sock.settimeout(deadline.left())
        chunk = sock.recv(16 * 1024)
        if not chunk:
            raise CallFailed("the connection closed before a complete HTTP answer" if answer
                             else "the connection closed without an answer")
        answer += chunk
    head, _, rest = bytes(answer).partition(b"\r\n\r\n")
    return head, rest


def _status(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise CallFailed(f"not an HTTP answer: {line[:80]!r}")
    return int(parts[1])


def _content_length(head: bytes, undeclared: int | None = MAX_ANSWER_BYTES) -> int | None:
    """The body's declared length; `undeclared` when there is none (read until the server closes)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return undeclared
