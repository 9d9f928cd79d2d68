"""The local upload PUT: a body must arrive whole, within the size limit and without
stalling, to a URL exactly as the service issued it. Nothing partial is kept or built."""

import os
import socket
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from core.tables import ModelVersion
from web.settings import settings_of

from ..conftest import LiveServer
from .helpers import pickle_zip, put_local, upload_url


@pytest.fixture
def service(client_for):
    api = client_for(UPLOAD_MAX_BYTES=64 * 1024, UPLOAD_IDLE_TIMEOUT_S=1)
    return api.app, api.client, api.headers


def _status(app, url: str) -> str:
    version_id = int(urlsplit(url).path.rsplit("/", 1)[1])
    with app.extensions["db"].sessions() as session:
        return session.get(ModelVersion, version_id).status


def _upload_folder(app) -> list[str]:
    return os.listdir(os.path.join(settings_of(app).data_dir, "uploads"))


def _raw_put(base_url: str, url: str, head_extra: str, body: bytes, then_wait: float = 0) -> bytes:
    """PUT over a raw socket, so a test can send less than it announces, or stall."""
    parts, server = urlsplit(url), urlsplit(base_url)
    with socket.create_connection((server.hostname, server.port), timeout=10) as sock:
        sock.sendall(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: x\r\n{head_extra}\r\n".encode() + body)
        if then_wait:
            time.sleep(then_wait)
        else:
            sock.shutdown(socket.SHUT_WR)  # the client is done: the body is short
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_a_body_shorter_than_its_content_length_is_refused_and_not_built(service):
    app, client, headers = service
    url = upload_url(client, headers, "short")
    with LiveServer(app) as live:
        answer = _raw_put(live.url, url, "Content-Length: 5000\r\n", pickle_zip()[:1000])

    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert _status(app, url) == "awaiting_upload"
    assert _upload_folder(app) == []
    assert put_local(client, url, pickle_zip()).status_code == 200  # the same URL still takes the whole zip


def test_a_stalled_body_times_out_with_408_and_leaves_nothing(service):
    app, client, headers = service
    url = upload_url(client, headers, "stalled")
    with LiveServer(app) as live:
        answer = _raw_put(live.url, url, "Content-Length: 5000\r\n", b"PK" * 100, then_wait=3)

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"INFER_UPLOAD_IDLE_TIMEOUT_S" in answer
    assert _status(app, url) == "awaiting_upload" and _upload_folder(app) == []


def test_a_chunked_body_over_the_limit_is_413_naming_the_upload_limit_and_leaves_nothing(service):
    app, client, headers = service
    url = upload_url(client, headers, "chunked")
    chunk = b"x" * 16384
    body = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    with LiveServer(app) as live:
        answer = _raw_put(live.url, url, "Transfer-Encoding: chunked\r\n", body)

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"INFER_UPLOAD_MAX_BYTES" in answer and b"INFER_MAX_CONTENT_LENGTH" not in answer
    assert _status(app, url) == "awaiting_upload" and _upload_folder(app) == []


def test_a_url_signed_with_another_expiry_than_the_stored_one_is_refused(service):
    app, client, headers = service
    url = upload_url(client, headers, "forged")
    parts = urlsplit(url)
    version_id = int(parts.path.rsplit("/", 1)[1])
    later = int(parse_qs(parts.query)["expires"][0]) + 365 * 24 * 3600
    storage = app.extensions["storage"]
    forged = storage.upload_url(version_id, later, "http://localhost/")  # validly signed, never issued

    assert put_local(client, forged, pickle_zip()).status_code == 403
    assert _status(app, url) == "awaiting_upload"
    assert put_local(client, url, pickle_zip()).status_code == 200
