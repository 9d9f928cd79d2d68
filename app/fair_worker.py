"""gunicorn's threaded worker, with its thread pool shared fairly between clients.

gunicorn's gthread worker hands each connection with a request to read to a
ThreadPoolExecutor, whose queue is first-in first-out and knows nothing of who
sent what: a client with 300 connections keeps ~300 requests ahead of anyone
else's, and a request of another account waits behind all of them for a
thread. This worker's pool keeps one queue per client instead, and its threads
take from them round-robin (core/fair_queue.py, the queue the models' batchers
use too): another client's request is taken before the flood's next one.

And a client gets at most INFER_ACCOUNT_MAX_IN_FLIGHT threads at once: its
other requests wait in its queue, on their connections, until one of its own
is answered. Waiting there costs a socket and no thread, no CPU: measured with
300 connections of one key on this 2-core machine, answering the surplus with
429s at once instead burned both cores on refusals (1,600 a second) and left
another account's requests 100x slower; queued, they cost nothing. The app's
own per-account limit (web/admission.py) still refuses an account that spreads
its flood over several keys, and each model's batcher shares its passes
round-robin between accounts.

A thread that has answered a kept-alive connection waits on it a moment
(INFER_KEEPALIVE_LINGER_MS) for that client's next request and serves it at
once, when no other request waits for a thread: handing the connection back to
the main loop's poller and a thread again costs two thread wake-ups, two poller
changes and the queue's work per request (measured on this 2-core machine:
about a tenth of a small model's single-sentence latency). It stops as soon as
another request waits for a thread, after the linger, and when the worker stops,
so that the pool's turns between clients stay as they are; the connection keeps
its client's thread count while it lingers.

And a response of known length goes out in one write, its head with its body:
gunicorn writes them apart, so the client woke for the head alone and the body
followed a moment later (measured here: about 0.4 ms of a single-sentence
request, mostly spent in the head's write while the woken client took the core).
A response without a length (a stream of events) is written as gunicorn writes it.

The client is told from the request's first bytes, peeked from the socket before
it is queued (nothing is read from it: the worker thread parses the request as
usual): its API key (x-api-key or Authorization), else the peer's address. A key
is only a name for a queue here, kept hashed; whether it is valid is decided by
the app, as always.

    worker_class = "app.fair_worker.FairThreadWorker"   (gunicorn.conf.py)
"""

import hashlib
import re
import select
import socket
import threading
import time
from concurrent.futures import Future

from gunicorn.workers.gthread import ThreadWorker

from core.fair_queue import FairQueue
from core.settings import Settings

# How much of a request is looked at for its key: a request line and headers
# longer than this (rare) are queued by the peer's address.
PEEK_BYTES = 8192
_KEY_HEADER = re.compile(rb"\r\n(?:x-api-key|authorization)[ \t]*:[ \t]*([^\r\n]{1,1024})", re.IGNORECASE)


def client_of(conn) -> str:
    """Which queue a gunicorn connection's next request waits in."""
    head = b""
    # Bytes already read past the last request (a pipelined one), on an HTTP/1 connection.
    buffered = getattr(getattr(getattr(conn, "parser", None), "unreader", None), "buf", None)
    if buffered is not None:
        head = buffered.getvalue()[:PEEK_BYTES]
    if len(head) < PEEK_BYTES:
        try:
            head += conn.sock.recv(PEEK_BYTES - len(head), socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (OSError, ValueError):  # nothing there yet, closed, or TLS (no peeking through it)
            pass
    found = _KEY_HEADER.search(head)
    if found:
        return "key:" + hashlib.blake2b(found.group(1).strip(), digest_size=12).hexdigest()
    peer = conn.client[0] if isinstance(conn.client, tuple) and conn.client else str(conn.client)
    return f"peer:{peer}"


class _Task:
    __slots__ = ("call", "future", "client", "items")

    def __init__(self, call, future: Future, client: str):
        self.call = call
        self.future = future
        self.client = client
        self.items = (None,)  # one unit of work, for FairQueue's counting


class FairExecutor:
    """The subset of ThreadPoolExecutor that gunicorn uses (submit, shutdown),
    with a fair queue in front of its threads."""

    def __init__(self, threads: int, per_client: int = 0, client=client_of):
        self._client = client
        self.per_client = per_client  # most threads one client holds at once; 0: no limit
        self._running: dict[str, int] = {}
        self._queue = FairQueue()
        self._changed = threading.Condition()
        self._shutdown = False
        self._threads = [threading.Thread(target=self._work, name=f"fair-pool-{n}", daemon=True)
                         for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, function, *args, **kwargs) -> Future:
        future = Future()
        try:
            key = self._client(*args) if args else ""
        except Exception:  # noqa: BLE001 - this runs on gunicorn's main loop: never let it fail
            key = ""
        with self._changed:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._queue.append(key, _Task(lambda: function(*args, **kwargs), future, key))
            self._changed.notify()
        return future

    def queued(self) -> int:
        return len(self._queue)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        with self._changed:
            self._shutdown = True
            if cancel_futures:
                for task in self._queue.take(len(self._queue) or 1, lambda task: True):
                    task.future.cancel()
            self._changed.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()

    def running(self, client: str) -> int:
        return self._running.get(client, 0)

    def _may_run(self, client: str) -> bool:
        return not self.per_client or self._running.get(client, 0) < self.per_client

    def _next(self) -> _Task | None:
        with self._changed:
            while True:
                taken = self._queue.take(1, lambda task: task.future.set_running_or_notify_cancel(), self._may_run)
                if taken:
                    task = taken[0]
                    self._running[task.client] = self._running.get(task.client, 0) + 1
                    return task
                if self._shutdown and not len(self._queue):
                    return None
                self._changed.wait()

    def _done(self, task: _Task) -> None:
        with self._changed:
            left = self._running[task.client] - 1
            if left:
                self._running[task.client] = left
            else:
                del self._running[task.client]
            if len(self._queue):  # its next request may run now; with none queued, no thread is woken for nothing
                self._changed.notify()

    def _work(self) -> None:
        while (task := self._next()) is not None:
            try:
                result = task.call()
            except BaseException as exc:  # noqa: BLE001 - handed to the future, as ThreadPoolExecutor does
                self._done(task)
                task.future.set_exception(exc)
            else:
                self._done(task)
                task.future.set_result(result)


def per_client_threads(threads: int) -> int:
    """INFER_ACCOUNT_MAX_IN_FLIGHT (read as the app reads it), kept below the
    thread count so that other clients always find a thread."""
    limit = Settings.from_environ().account_max_in_flight
    return max(1, min(limit or threads, threads - max(1, threads // 4)))


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)", re.IGNORECASE)


class _OneWrite:
    """A connection's socket, as gunicorn's response writes to it: a head that
    announces a body of known length is held until the body's first bytes, and
    both are sent in one call. Everything else is the socket's own, and the
    socket itself is `wrapped` (the app's client watcher, web/client_gone.py,
    looks at it through the WSGI environ's gunicorn.socket)."""

    __slots__ = ("wrapped", "_held")

    def __init__(self, sock):
        self.wrapped = sock
        self._held = b""

    def sendall(self, data, *flags):
        if self._held:
            data, self._held = self._held + bytes(data), b""
        elif data[:5] == b"HTTP/" and data.endswith(b"\r\n\r\n"):
            length = _CONTENT_LENGTH.search(data)
            if length and int(length.group(1)) > 0:
                self._held = bytes(data)
                return None
        return self.wrapped.sendall(data, *flags)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, b""
            self.wrapped.sendall(held)

    # Any other way of writing (gunicorn sends a file's body with sendfile) sends the
    # held head first.
    def sendfile(self, *args, **kwargs):
        self.flush()
        return self.wrapped.sendfile(*args, **kwargs)

    def send(self, *args, **kwargs):
        self.flush()
        return self.wrapped.send(*args, **kwargs)

    def sendmsg(self, *args, **kwargs):
        self.flush()
        return self.wrapped.sendmsg(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.wrapped, name)


# While it lingers, a thread looks this often whether another request waits for it.
LINGER_SLICE_S = 0.001  # poll() counts whole milliseconds


def next_request_arrives(conn, linger_s: float, others_wait=lambda: False) -> bool:
    """Whether a kept-alive connection has its next request's bytes (already read
    ahead, or readable within linger_s): the client sent more, or closed it.
    False as soon as others_wait(): the thread is wanted elsewhere."""
    buffered = getattr(getattr(getattr(conn, "parser", None), "unreader", None), "buf", None)
    if buffered is not None and buffered.getvalue():
        return True
    try:
        poller = select.poll()
        poller.register(conn.sock.fileno(), select.POLLIN | select.POLLPRI)
        deadline = time.monotonic() + linger_s
        while not others_wait():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if poller.poll(min(left, LINGER_SLICE_S) * 1000):
                return True
        return False
    except (OSError, ValueError):  # closed meanwhile
        return False


class FairThreadWorker(ThreadWorker):
    def get_thread_pool(self):
        settings = Settings.from_environ()
        self.linger_s = max(0.0, settings.keepalive_linger_ms) / 1000
        return FairExecutor(self.cfg.threads, per_client_threads(self.cfg.threads))

    def handle(self, conn):
        """gunicorn's handling of one request; then, while nobody else waits for a
        thread, the connection's next requests that come within the linger."""
        result = super().handle(conn)
        while (result is True and self.linger_s and self.alive
               and next_request_arrives(conn, self.linger_s, self._others_wait)):
            result = super().handle(conn)
        return result

    def _others_wait(self) -> bool:
        return bool(self.tpool.queued()) or not self.alive

    def handle_request(self, req, conn):
        sock = conn.sock
        conn.sock = one_write = _OneWrite(sock)  # what gunicorn's response writes to
        try:
            return super().handle_request(req, conn)
        finally:
            conn.sock = sock
            try:
                one_write.flush()  # a head whose body never came (HEAD, an error meanwhile)
            except OSError:  # the connection broke or was closed: gunicorn's own handling follows
                pass
