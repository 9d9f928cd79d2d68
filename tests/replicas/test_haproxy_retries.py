"""Which requests deploy/haproxy.cfg sends again when a replica drops them.

Two stand-in replicas behind the shipped config: one answers every request,
the other reads each request and closes the connection without answering
(as a replica killed in the middle of it does). Both answer the health check,
so round robin keeps sending to both. A request that computes an answer and
stores nothing must reach the answering one; one that stores something must
be sent once, and fail, rather than run twice.
"""

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from ..haproxy import HAProxy


class StandIn(ThreadingHTTPServer):
    """A replica stand-in on a free port; `seen` lists the X-Test-Id of every request it read."""

    daemon_threads = True

    def __init__(self, drops: bool):
        super().__init__(("127.0.0.1", 0), StandInHandler)
        self.drops = drops
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def handle_error(self, request, client_address):
        pass  # a health check or a retried client that hung up: not this test's business

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class StandInHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _handle(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/readyz":
            self.server.seen.append(self.headers.get("X-Test-Id"))
            if self.server.drops:
                self.close_connection = True  # closed with nothing sent: an empty response
                return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _handle


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    dropping, answering = StandIn(drops=True), StandIn(drops=False)
    proxy = HAProxy(str(tmp_path_factory.mktemp("haproxy")),
                    {"dropping": dropping.address, "answering": answering.address},
                    checks="inter 200ms fall 2 rise 1")
    with proxy:
        proxy.wait_status("dropping", "UP")
        proxy.wait_status("answering", "UP")
        yield proxy, dropping, answering
    for server in (dropping, answering):
        server.shutdown()
        server.server_close()


def send(proxy, method, path, headers=None, body=b'{"text": "hello"}'):
    test_id = uuid.uuid4().hex
    response = requests.request(method, proxy.url + path, data=body if method != "GET" else None,
                                headers={"X-Test-Id": test_id, "Content-Type": "application/json", **(headers or {})},
                                timeout=30)
    return test_id, response.status_code


REPLAY_SAFE = [("POST", "/text-vectorisation"), ("POST", "/v1/embeddings"), ("POST", "/custom"),
               ("POST", "/p/pk_secret"), ("GET", "/models")]
STORES_SOMETHING = [("POST", "/keys", {}), ("POST", "/upload-url", {}), ("DELETE", "/models/mine", {}),
                    ("POST", "/datasets", {}), ("POST", "/text-vectorisation", {"Prefer": "respond-async"})]


@pytest.mark.parametrize("method,path", REPLAY_SAFE)
def test_a_request_that_stores_nothing_is_answered_by_another_replica_when_one_drops_it(replicas, method, path):
    proxy, dropping, answering = replicas
    sent = [send(proxy, method, path) for _ in range(4)]
    assert [status for _id, status in sent] == [200] * 4
    ids = [test_id for test_id, _status in sent]
    dropped = [test_id for test_id in dropping.seen if test_id in ids]
    # Round robin gave the dropping replica some of them, and each of those was sent again.
    assert dropped and set(ids) <= set(answering.seen)


@pytest.mark.parametrize("method,path,headers", STORES_SOMETHING)
def test_a_request_that_stores_something_is_never_sent_twice(replicas, method, path, headers):
    proxy, dropping, answering = replicas
    sent = [send(proxy, method, path, headers) for _ in range(4)]
    for test_id, status in sent:
        reached = dropping.seen.count(test_id) + answering.seen.count(test_id)
        assert reached == 1, (method, path, headers)
        assert status == (502 if test_id in dropping.seen else 200)
    assert any(test_id in dropping.seen for test_id, _status in sent)  # the case did happen


def test_a_refused_connection_is_retried_for_any_request(tmp_path):
    # A replica that stopped listening: nothing was sent to it, so even a POST /keys goes elsewhere.
    leaving, answering = StandIn(drops=False), StandIn(drops=False)
    # Checks a minute apart: after the first ones, haproxy learns of the closed port only from live traffic.
    with HAProxy(str(tmp_path), {"leaving": leaving.address, "answering": answering.address},
                 checks="inter 60s fall 2 rise 1") as proxy:
        proxy.wait_status("leaving", "UP")
        proxy.wait_status("answering", "UP")
        leaving.shutdown()
        leaving.server_close()
        statuses = [send(proxy, "POST", "/keys")[1] for _ in range(4)]
        leaving_row = proxy.stats()["leaving"]
    answering.shutdown()
    answering.server_close()
    assert statuses == [200] * 4
    # One was sent to the closed port first and redispatched; that failed connection also
    # took the replica out at once (HANA: by observing traffic, not by a health check).
    assert int(leaving_row["wredis"]) >= 1
    assert (leaving_row["status"], leaving_row["check_status"]) == ("DOWN", "HANA")
