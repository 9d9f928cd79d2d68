"""Slow clients (slowloris) against the production server, with and without deploy/nginx.conf.

gunicorn's gthread worker gives a connection a thread once its first byte
arrives and keeps it until the request is read, so a few clients that trickle
their headers take every thread. The supported defence is nginx in front
(deploy/nginx.conf): these tests start the real server as tests/test_serve.py
does, with 1 worker x 4 threads so that exhaustion is cheap to reach, put the
shipped nginx config in front of it, and check that the defence holds.

Only functional timeouts are asserted (a request answers, or does not, within
a generous client timeout); nothing about speed.
"""

import re
import select
import socket
import threading
import time
import uuid

import pytest
import requests

from .gunicorn import production_server
from .nginx import Nginx

THREADS = 4
SLOW = 3 * THREADS  # more slow connections than gunicorn has threads, by far
# The test config's header and body timeouts (deploy/nginx.conf has 10 s):
# long enough that the normal requests below are done well before they fire.
NGINX_TIMEOUT_S = 6
# The access log format of the test's gunicorn: the headers nginx must set.
ACCESS_FORMAT = "%(r)s|rid=%({x-request-id}i)s|xff=%({x-forwarded-for}i)s|host=%({host}i)s"


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory):
    """gunicorn -c gunicorn.conf.py wsgi:app, started as tests/test_serve.py starts it."""
    tmp = tmp_path_factory.mktemp("gunicorn")
    access_log = str(tmp / "access.log")
    # GUNICORN_CMD_ARGS overrides the config file's access log format only: it
    # records what nginx forwarded, for test_proxy_forwards_client_headers.
    with production_server(tmp, INFER_WORKERS="1", INFER_THREADS=str(THREADS), INFER_ACCESS_LOG=access_log,
                           GUNICORN_CMD_ARGS=f"--access-logformat '{ACCESS_FORMAT}'") as server:
        keys = server.printed_keys()
        assert len(keys) == 1, "the first start prints one API key"
        yield {"url": server.url, "port": server.port, "key": keys[0], "access_log": access_log}


@pytest.fixture(scope="module")
def proxy(gunicorn_server, tmp_path_factory):
    """deploy/nginx.conf in front of gunicorn, its client timeouts shortened for the test."""
    seconds = f"{NGINX_TIMEOUT_S}s"
    with Nginx(str(tmp_path_factory.mktemp("nginx")), f"127.0.0.1:{gunicorn_server['port']}",
               directives={"client_header_timeout": seconds, "client_body_timeout": seconds}) as nginx:
        yield nginx


class SlowClients:
    """`count` connections that each send `opening` at once, then one byte of `drip` every
    `interval` seconds (or nothing more, when drip is empty), until the server closes them.

    One background thread serves them all; `closed` maps a connection's index to how the
    server ended it: b"" (EOF), the start of a response (e.g. a 408), or "reset".
    """

    def __init__(self, port: int, count: int, opening: bytes, drip: bytes = b"a", interval: float = 1.0):
        self.port, self.count, self.opening, self.drip, self.interval = port, count, opening, drip, interval
        self.socks: list[socket.socket] = []
        self.closed: dict[int, object] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        try:
            for _ in range(self.count):
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                sock.sendall(self.opening)
                self.socks.append(sock)
        except BaseException:
            self._close_all()
            raise
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        self._close_all()

    def _close_all(self):
        for sock in self.socks:
            sock.close()

    def _run(self):
        next_drip = time.monotonic() + self.interval
        while not self._stop.wait(0.1):
            dripping = self.drip and time.monotonic() >= next_drip
            if dripping:
                next_drip += self.interval
            for index, sock in enumerate(self.socks):
                if index in self.closed:
                    continue
                try:
                    if select.select([sock], [], [], 0)[0]:  # the server answered or closed
                        how = sock.recv(64)
                    elif dripping:
                        sock.sendall(self.drip)
                        continue
                    else:
                        continue
                except OSError:  # ECONNRESET, EPIPE: nginx resets timed-out connections
                    how = "reset"
                with self._lock:
                    self.closed[index] = how

    def open_count(self) -> int:
        with self._lock:
            return self.count - len(self.closed)

    def wait_all_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.open_count() == 0:
                return True
            time.sleep(0.1)
        return self.open_count() == 0

    def endings(self) -> list:
        with self._lock:
            return list(self.closed.values())


def slow_header(path: str = "/healthz") -> bytes:
    """The start of a request whose header never ends: the drip grows its last line."""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode()


def slow_body(path: str, length: int = 100_000) -> bytes:
    """A complete header announcing a body (under the 2 MiB limit) and the first bytes of it."""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n{{\"text\": \"").encode()


def assert_serves_normal_requests(url: str, key: str):
    """An anonymous and an authenticated request both answer, within a generous timeout."""
    assert requests.get(url + "/healthz", timeout=10).status_code == 200
    keys = requests.get(url + "/keys", headers={"x-api-key": key}, timeout=10)
    assert keys.status_code == 200, keys.text


def is_closed_by_server(how) -> bool:
    return how in (b"", "reset") or (isinstance(how, bytes) and how.startswith(b"HTTP/1.1 408"))


def nginx_statuses(nginx: Nginx, needle: str) -> list[str]:
    """The statuses nginx logged for the requests whose line contains needle (see log_format infer)."""
    lines = [line for line in open(nginx.access_log).read().splitlines() if needle in line]
    return [re.search(r'" (\d{3}) ', line).group(1) for line in lines]


def wait_for_line(path: str, needle: str, timeout: float = 10) -> str:
    """The first line of gunicorn's access log that contains needle (written after the response)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in open(path).read().splitlines():
            if needle in line:
                return line
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never reached gunicorn's access log")


def test_gunicorn_alone_stops_answering_under_slow_headers(gunicorn_server):
    """The problem the proxy solves, shown on the same server: with no nginx in front, a few
    connections that trickle their headers take every thread, and nobody else is answered."""
    url = gunicorn_server["url"]
    assert_serves_normal_requests(url, gunicorn_server["key"])
    with SlowClients(gunicorn_server["port"], SLOW, slow_header()) as slow:
        # Every connection has sent bytes by now, so each one a thread picks up holds it.
        time.sleep(2)
        with pytest.raises(requests.exceptions.Timeout):
            requests.get(url + "/healthz", timeout=5)
        # gunicorn has no header timeout: it closed none of them.
        assert slow.open_count() == SLOW
    # Once the slow clients go, their threads are free and the service answers again.
    assert_serves_normal_requests(url, gunicorn_server["key"])


def test_proxy_serves_during_slow_headers_and_times_them_out(proxy, gunicorn_server):
    marker = uuid.uuid4().hex
    with SlowClients(proxy.port, SLOW, slow_header(f"/healthz?slow-{marker}")) as slow:
        time.sleep(1.5)  # every slow connection has sent its opening and a drip byte or more
        # nginx holds the incomplete headers itself: gunicorn's 4 threads are all free.
        assert_serves_normal_requests(proxy.url, gunicorn_server["key"])
        # Answered while every slow connection was still open (the timeout is
        # NGINX_TIMEOUT_S, so this is not a race that the assertion above won).
        assert slow.open_count() == SLOW
        # client_header_timeout counts the whole header, not the pause between
        # bytes: clients still dripping a byte a second are cut off.
        assert slow.wait_all_closed(NGINX_TIMEOUT_S + 15), slow.endings()
        assert all(is_closed_by_server(how) for how in slow.endings()), slow.endings()
    # Closed by the header timeout, not by some error: nginx logs each as a 408.
    assert nginx_statuses(proxy, f"slow-{marker}") == ["408"] * SLOW
    assert_serves_normal_requests(proxy.url, gunicorn_server["key"])


def test_proxy_buffers_slow_bodies_and_times_out_stalled_ones(proxy, gunicorn_server):
    marker = uuid.uuid4().hex
    # Trickling a byte a second: never idle for client_body_timeout, so nginx keeps reading.
    trickling = SlowClients(proxy.port, SLOW, slow_body(f"/keys?trickle-{marker}"))
    # Sent the header and a few body bytes, then nothing.
    stalled = SlowClients(proxy.port, SLOW, slow_body(f"/keys?stall-{marker}"), drip=b"")
    with trickling, stalled:
        time.sleep(1.5)
        assert_serves_normal_requests(proxy.url, gunicorn_server["key"])
        # client_body_timeout ends the stalled bodies...
        assert stalled.wait_all_closed(NGINX_TIMEOUT_S + 15), stalled.endings()
        assert all(is_closed_by_server(how) for how in stalled.endings()), stalled.endings()
        assert nginx_statuses(proxy, f"stall-{marker}") == ["408"] * SLOW
        # ...but it is a limit on each pause, not on the whole body: the trickling
        # ones are still open. What keeps them from gunicorn is request buffering.
        assert trickling.open_count() == SLOW
        assert_serves_normal_requests(proxy.url, gunicorn_server["key"])
    # gunicorn never saw any of those requests (proxy_request_buffering on): had
    # nginx passed them on, POST /keys without a key answers 401 at once after the
    # header, and gunicorn would have logged it. A request that did get through
    # shows the log is being written.
    requests.get(f"{proxy.url}/healthz?complete-{marker}", timeout=10)
    wait_for_line(gunicorn_server["access_log"], f"complete-{marker}")
    log = open(gunicorn_server["access_log"]).read()
    assert f"trickle-{marker}" not in log and f"stall-{marker}" not in log


def test_proxy_forwards_client_headers_and_body_limits(proxy, gunicorn_server):
    log, key = gunicorn_server["access_log"], gunicorn_server["key"]
    # X-Request-Id: the client's own goes through; without one, nginx makes one.
    requests.get(f"{proxy.url}/healthz?rid-own", headers={"X-Request-Id": "req-123"}, timeout=10)
    assert "|rid=req-123|" in wait_for_line(log, "rid-own")
    requests.get(f"{proxy.url}/healthz?rid-none", timeout=10)
    assert re.search(r"\|rid=[0-9a-f]{32}\|", wait_for_line(log, "rid-none"))
    # X-Forwarded-For is the address nginx saw, not what the client claims.
    requests.get(f"{proxy.url}/healthz?xff", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)
    assert "|xff=127.0.0.1|" in wait_for_line(log, "?xff")

    # Host (with its port) and the scheme reach the app, which builds upload URLs from
    # them: the URL points at the proxy. A client's own scheme headers are replaced
    # (X-Forwarded-Ssl would otherwise contradict nginx's X-Forwarded-Proto: a 400).
    issued = requests.post(proxy.url + "/upload-url", json={"model_name": "proxied"},
                           headers={"x-api-key": key, "X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on"},
                           timeout=30)
    assert issued.status_code == 200, issued.text
    upload_url = issued.json()
    assert upload_url.startswith(proxy.url + "/uploads/"), upload_url

    big = b"x" * (3 * 1024 * 1024)  # over the 2 MiB API limit
    # API requests: nginx refuses the body itself (its own HTML page, not the app's JSON).
    refused = requests.post(proxy.url + "/keys", data=big, headers={"x-api-key": key}, timeout=30)
    assert refused.status_code == 413 and "text/html" in refused.headers["Content-Type"]
    # The upload location takes far more (INFER_UPLOAD_MAX_BYTES) and hands it to the app.
    uploaded = requests.put(upload_url, data=big, timeout=60)
    assert uploaded.status_code == 200, uploaded.text
    assert "Upload received" in uploaded.json()["message"]

    # Datasets: one sent in the request may be 10 MiB (INFER_DATASET_MAX_DIRECT_BYTES), a large
    # one goes to its upload URL (INFER_DATASET_MAX_BYTES); both reach the app through the proxy.
    rows = "text,label\n" + "a fine review of three megabytes,positive\n" * 80_000
    sent = requests.post(proxy.url + "/datasets", json={"data": rows}, headers={"x-api-key": key}, timeout=60)
    assert sent.status_code == 201, sent.text
    announced = requests.post(proxy.url + "/datasets", json={"upload": True}, headers={"x-api-key": key},
                              timeout=30)
    assert announced.status_code == 201, announced.text
    dataset_url = announced.json()["upload_url"]
    assert dataset_url.startswith(proxy.url + "/dataset-uploads/"), dataset_url
    put = requests.put(dataset_url, data=rows.encode(), timeout=60)
    assert put.status_code == 200, put.text


def test_proxy_limits_requests_per_client_address(gunicorn_server, tmp_path):
    # The shipped config allows 64 requests in progress per address; 3 is as cheap to test.
    with Nginx(str(tmp_path), f"127.0.0.1:{gunicorn_server['port']}",
               directives={"client_header_timeout": "30s", "client_body_timeout": "30s"},
               replacements={"limit_conn infer_per_client 64;": ("limit_conn infer_per_client 3;", 3)}) as nginx:
        # Connections still sending their header do not count (the header timeout bounds those)...
        with SlowClients(nginx.port, 6, slow_header()):
            time.sleep(1.5)
            assert requests.get(nginx.url + "/healthz", timeout=10).status_code == 200
        # ...requests whose body is being read do: a fourth request from this address is refused.
        with SlowClients(nginx.port, 3, slow_body("/keys")) as slow:
            time.sleep(1.5)
            assert slow.open_count() == 3
            assert requests.get(nginx.url + "/healthz", timeout=10).status_code == 429
        # Once they are gone, the address may send requests again.
        deadline = time.monotonic() + 10
        while requests.get(nginx.url + "/healthz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "nginx kept counting closed connections"
            time.sleep(0.2)
