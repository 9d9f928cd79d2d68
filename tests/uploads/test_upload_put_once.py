"""An upload URL holds at most one server thread: while one PUT to it is being
received, another PUT to the same URL gets 409 at once (it would otherwise take a
thread of its own, trickling, for as long as the client likes, and write over
the first's file). Once the first ends, whole or not, the URL takes a PUT again."""

import os
import socket
from urllib.parse import urlsplit

import requests

from ..conftest import LiveServer, until
from .helpers import pickle_zip, upload_url, wait_built


def start_trickling_put(server_url: str, url: str, length: int) -> socket.socket:
    """A PUT whose headers and first bytes arrive, then nothing: the server is receiving it."""
    parts, server = urlsplit(url), urlsplit(server_url)
    sock = socket.create_connection((server.hostname, server.port))
    sock.sendall(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {server.netloc}\r\n"
                 f"Content-Type: application/zip\r\nContent-Length: {length}\r\n\r\n".encode() + b"PK")
    return sock


def new_upload(client_for, name: str):
    """An app that builds, and (the app, the zip, the upload URL's path, its partial file)."""
    api = client_for(BUILDER=True, BUILD_POLL_S=0.2)
    url = upload_url(api.client, api.headers, name)
    partial = api.app.extensions["storage"].archive_path(1) + ".partial"  # the first version of a new app
    return api, pickle_zip(name), "/" + url.split("/", 3)[3], partial


def test_a_second_put_to_an_upload_url_in_use_is_refused_and_the_first_is_untouched(client_for):
    api, body, path, partial = new_upload(client_for, "once")
    with LiveServer(api.app) as server:
        local = server.url + path
        first = start_trickling_put(server.url, local, len(body))
        until(lambda: os.path.exists(partial))  # the first PUT is being received

        second = requests.put(local, data=body, headers={"content-type": "application/zip"}, timeout=30)
        assert second.status_code == 409
        assert "in progress" in second.json()["message"] and second.headers["Retry-After"]

        first.sendall(body[2:])  # the first PUT goes on to its end, as sent
        reply = first.recv(65536).decode()
        first.close()
    assert reply.startswith("HTTP/1.1 200"), reply
    assert wait_built(api.client, api.headers, "once")["build_status"] == "success"


def test_after_an_abandoned_put_the_url_takes_the_upload(client_for):
    api, body, path, partial = new_upload(client_for, "again")
    with LiveServer(api.app) as server:
        local = server.url + path
        abandoned = start_trickling_put(server.url, local, len(body))
        until(lambda: os.path.exists(partial))
        abandoned.close()  # the client goes away mid-upload
        until(lambda: not os.path.exists(partial))
        again = requests.put(local, data=body, headers={"content-type": "application/zip"}, timeout=30)
    assert again.status_code == 200, again.text
    assert wait_built(api.client, api.headers, "again")["build_status"] == "success"
