"""A real gunicorn told to stop (SIGTERM), as Kubernetes stops a pod: /readyz turns
503 at once while requests, in progress and new, are still served for INFER_DRAIN_S;
then gunicorn's graceful stop. A second SIGTERM ends the drain early."""

import json
import signal
import socket
import time

import requests

from ..gunicorn import production_server


def wait_for_status(url: str, status: int, timeout: float = 60) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(url, timeout=10)
        if response.status_code == status:
            return response
        assert time.monotonic() < deadline, (response.status_code, response.text)
        time.sleep(0.1)


def read_response(connection: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = connection.recv(65536)
        assert chunk, data
        body += chunk
    return int(head.split(b" ")[1]), json.loads(body)


def test_sigterm_turns_readyz_503_while_a_slow_request_finishes_and_new_ones_are_served(tmp_path):
    with production_server(tmp_path, INFER_DRAIN_S="600") as server:
        key = server.printed_keys()[0]
        body = json.dumps({"model": "no-such-model", "input": "hello"}).encode()
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        slow.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + key.encode() + b"\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])

        server.process.send_signal(signal.SIGTERM)
        draining = wait_for_status(server.url + "/readyz", 503)
        alive = requests.get(server.url + "/healthz", timeout=10)
        slow.sendall(body[10:])  # the request in progress finishes, answered
        status, answer = read_response(slow)
        slow.close()

        assert "SIGTERM" in draining.json()["checks"]["draining"]
        assert alive.status_code == 200  # still serving meanwhile
        assert status == 404 and "no-such-model" in json.dumps(answer)
        assert server.process.poll() is None  # still draining (600 s)

        server.process.send_signal(signal.SIGTERM)  # a second one ends the drain
        assert server.process.wait(timeout=120) == 0
        assert "draining for 600 s" in server.log()


def test_the_drain_ends_by_itself_after_infer_drain_s(tmp_path):
    with production_server(tmp_path, INFER_DRAIN_S="1") as server:
        server.process.send_signal(signal.SIGTERM)

        assert server.process.wait(timeout=120) == 0
        assert "draining for 1 s" in server.log()
