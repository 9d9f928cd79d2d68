"""The gunicorn worker's thread pool (app/fair_worker.py): clients are told apart by
their key, peeked from the socket; the threads take their requests round-robin,
and one client holds at most its share of them while its other requests wait."""

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

from app.fair_worker import FairExecutor, _OneWrite, client_of, per_client_threads

from ..conftest import until
from ..gunicorn import ROOT
from ..servers import free_port, stop_process_group

WAIT_S = 10


class Conn:
    """What client_of reads of gunicorn's TConn."""

    def __init__(self, sock, client, parser=None):
        self.sock, self.client, self.parser = sock, client, parser


def connected_pair():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    server, address = listener.accept()
    listener.close()
    server.setblocking(False)
    return client, server, address


def peeked_client(request: bytes) -> str:
    client, server, address = connected_pair()
    try:
        client.sendall(request)
        until(lambda: _readable(server))
        key = client_of(Conn(server, address))
        assert server.recv(len(request), socket.MSG_PEEK) == request  # nothing was consumed
        return key
    finally:
        client.close()
        server.close()


def _readable(sock) -> bool:
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return False


def test_a_client_is_its_api_key_in_either_header_and_never_the_key_itself():
    by_header = peeked_client(b"POST /qa HTTP/1.1\r\nHost: x\r\nX-API-Key: ik_secret\r\n\r\n")
    by_bearer = peeked_client(b"POST /v1/embeddings HTTP/1.1\r\nauthorization: Bearer ik_secret\r\n\r\n")
    other = peeked_client(b"POST /qa HTTP/1.1\r\nx-api-key: ik_other\r\n\r\n")
    assert by_header.startswith("key:") and "ik_secret" not in by_header
    assert by_header != other
    assert by_bearer.startswith("key:") and by_bearer != by_header  # "Bearer ik_secret" is another name


def test_a_request_without_a_key_or_not_yet_arrived_is_its_peers():
    assert peeked_client(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") == "peer:127.0.0.1"
    client, server, address = connected_pair()
    try:
        assert client_of(Conn(server, address)) == "peer:127.0.0.1"  # nothing sent yet
    finally:
        client.close()
        server.close()


def test_a_pipelined_request_already_read_is_looked_at_too():
    class Unreader:
        def __init__(self, data):
            self.buf = type("Buf", (), {"getvalue": lambda _self: data})()

    class Parser:
        def __init__(self, data):
            self.unreader = Unreader(data)

    client, server, address = connected_pair()
    try:
        buffered = Parser(b"POST /qa HTTP/1.1\r\nx-api-key: ik_pipelined\r\n\r\n")
        assert client_of(Conn(server, address, buffered)).startswith("key:")
    finally:
        client.close()
        server.close()


class Blocking:
    """Work items that wait until the test lets them finish, and say when they started."""

    def __init__(self):
        self.started = []
        self.release = threading.Event()
        self._changed = threading.Condition()

    def work(self, name):
        with self._changed:
            self.started.append(name)
            self._changed.notify_all()
        assert self.release.wait(WAIT_S)
        return name

    def wait_started(self, count):
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.started) >= count, WAIT_S), self.started


def test_threads_take_clients_in_turn_not_in_arrival_order():
    blocking = Blocking()
    pool = FairExecutor(1, client=lambda name: name.split("-")[0])
    try:
        first = pool.submit(blocking.work, "flood-0")
        blocking.wait_started(1)
        flood = [pool.submit(blocking.work, f"flood-{n}") for n in range(1, 6)]
        quiet = pool.submit(blocking.work, "quiet-0")
        blocking.release.set()
        assert quiet.result(WAIT_S) == "quiet-0"
        assert [f.result(WAIT_S) for f in [first, *flood]] == [f"flood-{n}" for n in range(6)]
    finally:
        pool.shutdown()
    # Behind five of the flood's, the quiet client's request was the next to run.
    assert blocking.started[:3] == ["flood-0", "flood-1", "quiet-0"]


def test_a_client_holds_at_most_its_share_of_threads_and_its_other_requests_wait_without_one():
    blocking = Blocking()
    pool = FairExecutor(4, per_client=2, client=lambda name: name.split("-")[0])
    try:
        flood = [pool.submit(blocking.work, f"flood-{n}") for n in range(6)]
        blocking.wait_started(2)
        assert pool.running("flood") == 2 and pool.queued() == 4
        quiet = [pool.submit(blocking.work, f"quiet-{n}") for n in range(2)]
        blocking.wait_started(4)  # the two free threads are the quiet client's at once
        assert sorted(blocking.started[2:]) == ["quiet-0", "quiet-1"]
        blocking.release.set()
        assert [f.result(WAIT_S) for f in flood] == [f"flood-{n}" for n in range(6)]
        assert [f.result(WAIT_S) for f in quiet] == ["quiet-0", "quiet-1"]
    finally:
        pool.shutdown()
    assert pool.running("flood") == 0


def test_an_exception_reaches_the_future_and_frees_the_slot():
    pool = FairExecutor(1, per_client=1, client=lambda _name: "one")

    def fails(_name):
        raise ValueError("broken")

    try:
        failed = pool.submit(fails, "a")
        assert isinstance(failed.exception(WAIT_S), ValueError)
        assert pool.submit(lambda name: name, "b").result(WAIT_S) == "b"
    finally:
        pool.shutdown()


def test_shutdown_lets_queued_work_finish_and_refuses_new_work():
    pool = FairExecutor(1, client=lambda _name: "one")
    done = [pool.submit(time.sleep, 0) for _ in range(3)]
    pool.shutdown(wait=True)
    assert all(f.done() for f in done)
    try:
        pool.submit(time.sleep, 0)
    except RuntimeError:
        pass
    else:
        raise AssertionError("a stopped pool took work")


def test_the_share_keeps_threads_free_for_others(monkeypatch):
    monkeypatch.setenv("INFER_ACCOUNT_MAX_IN_FLIGHT", "48")
    assert per_client_threads(64) == 48
    assert per_client_threads(32) == 24  # a quarter of the threads stays with the other clients
    monkeypatch.setenv("INFER_ACCOUNT_MAX_IN_FLIGHT", "0")
    assert per_client_threads(8) == 6


class Recorded:
    """A socket stand-in that records each sendall call."""

    def __init__(self):
        self.calls = []

    def sendall(self, data, *flags):
        self.calls.append(bytes(data))

    def fileno(self):
        return 7


def test_a_head_of_known_length_goes_out_with_its_body_in_one_write():
    sock = Recorded()
    one = _OneWrite(sock)
    one.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")
    assert sock.calls == []  # held for its body
    one.sendall(b"{}")
    one.flush()
    assert sock.calls == [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"]
    assert one.fileno() == 7  # the rest is the socket's own


def test_a_head_without_a_length_or_without_a_body_is_not_held_back():
    streamed, empty, head_only = Recorded(), Recorded(), Recorded()
    _OneWrite(streamed).sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert streamed.calls == [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]  # a stream: at once
    _OneWrite(empty).sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
    assert len(empty.calls) == 1
    one = _OneWrite(head_only)
    one.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")  # a HEAD request's: no body follows
    one.flush()
    assert head_only.calls == [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"]


@contextmanager
def thread_app_server(tmp_path, threads: int, linger_ms: float):
    """gunicorn with the fair worker (one process, `threads` threads) serving thread_app."""
    port = free_port()
    env = {**os.environ, "INFER_KEEPALIVE_LINGER_MS": str(linger_ms), "PYTHONPATH": ROOT}
    with open(tmp_path / "gunicorn.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--worker-class", "app.fair_worker.FairThreadWorker", "--workers", "1",
             "--threads", str(threads), "--keep-alive", "60", "--bind", f"127.0.0.1:{port}", "--no-control-socket",
             "tests.app.thread_app:app"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        until(lambda: _answers(port), 60)
        yield port
    finally:
        stop_process_group(process)


def _answers(port: int) -> bool:
    try:
        ask(http.client.HTTPConnection("127.0.0.1", port, timeout=5))
        return True
    except OSError:
        return False


def ask(conn, path: str = "/") -> str:
    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 200
    return response.read().decode()


def test_a_thread_serves_a_kept_alive_connections_next_request_itself_while_it_lingers(tmp_path):
    # A linger far longer than the test: the next request always comes within it.
    with thread_app_server(tmp_path, threads=4, linger_ms=60_000) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
        served_by = {ask(conn) for _ in range(5)}
        assert len(served_by) == 1  # one thread, without going back through the poller and the pool
        assert ask(conn, "/stream") == served_by.pop() + "."  # a stream of unknown length comes whole too
        conn.close()


def test_a_file_sent_with_sendfile_comes_after_its_head(tmp_path):
    sent = tmp_path / "static.txt"
    sent.write_bytes(b"a file's bytes, sent by the kernel\n" * 100)
    with thread_app_server(tmp_path, threads=2, linger_ms=60_000) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
        for _ in range(2):  # and the connection is still usable after it
            assert ask(conn, f"/file?{sent}") == sent.read_text()
        conn.close()


def test_a_lingering_thread_is_handed_back_when_another_request_waits_for_it(tmp_path):
    # One thread, lingering on the first connection for longer than any wait of this test:
    # a request on a second connection is still answered, and then the first connection's.
    with thread_app_server(tmp_path, threads=1, linger_ms=600_000) as port:
        first = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S * 3)
        ask(first)
        second = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S * 3)
        assert ask(second)
        assert ask(first)
        first.close()
        second.close()


def test_the_app_still_finds_the_clients_socket_behind_the_wrapper():
    from web.client_gone import client_socket

    client, server, _address = connected_pair()
    try:
        assert client_socket({"gunicorn.socket": _OneWrite(server)}) is server  # the client watcher's socket
    finally:
        client.close()
        server.close()
