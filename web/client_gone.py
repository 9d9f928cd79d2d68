"""Waiting for a generation while watching its client, so that work nobody waits
for stops.

A non-streamed generation writes nothing until it is done, so the web server
cannot notice a client that has left (a streamed one notices at its next write:
openai_api/sse.py). Without this, an SDK that times out and retries (they all
do, by default) queues a second copy of a long generation while the first runs
on for nobody, and every other request on the model waits behind both. So the
request thread waits for its generation in slices of CLIENT_GONE_CHECK_S, and
between slices it looks at the client's connection:

- gunicorn hands the connection's socket to the app in the WSGI environ as
  "gunicorn.socket", werkzeug's server as "werkzeug.socket"; under a server that
  offers neither (and for a run made outside any request: api/prediction_dispatch.py)
  only the deadline applies.
- On Linux the kernel's TCP state tells, without reading anything, whether the
  peer has closed (CLOSE_WAIT once its FIN came, CLOSE after a reset): data a
  keep-alive client pipelined behind this request (its next request) is neither
  taken for a close nor hides one, and a TLS socket reads the same.
- Elsewhere (a unix socket behind a proxy), a readable socket whose MSG_PEEK read
  gives b"" is closed; pipelined data reads as "still there".

A client that half-closes its side after sending its request (shutdown(SHUT_WR),
which HTTP clients do not do) is taken for gone. A reverse proxy closes its
connection to the service when its own client leaves (nginx does by default,
proxy_ignore_client_abort off), so this works behind one.

Whether the client has gone or the deadline (REQUEST_TIMEOUT_S from the submit)
passed, the request's rows are flagged to stop at their next token, and its
future cancelled (a queued request is then dropped unrun), before the answer is
made: a 504 means the work was stopped, not left running.
"""

import select
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for

from flask import has_request_context, request

from core.errors import ApiError
from model_registry.batcher import DeadlineExceeded
from model_registry.loaders.generation import CANCELLED, DEADLINE, GenerationControl
from web.settings import current_settings

# The WSGI environ keys under which servers hand the app the client's socket.
SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")
TCP_ESTABLISHED = 1  # include/net/tcp_states.h


class ClientClosedRequest(ApiError):
    """The client went away before its answer was ready (nginx's 499): nobody reads it."""

    status = 499


def client_socket(environ: dict) -> socket.socket | None:
    for key in SOCKET_KEYS:
        # A server may hand over a wrapper of the socket (the fair worker's writes a
        # response's head with its body, app/fair_worker.py): the socket is its `wrapped`.
        sock = getattr(environ.get(key), "wrapped", environ.get(key))
        if isinstance(sock, socket.socket):
            return sock
    return None


def has_gone(sock: socket.socket) -> bool:
    """Whether the peer of this connection has closed it (or reset it)."""
    tcp_info = getattr(socket, "TCP_INFO", None)
    if tcp_info is not None:
        try:
            return sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 1)[0] != TCP_ESTABLISHED
        except OSError:  # not a TCP socket (a unix socket): look at what it reads instead
            pass
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError, ValueError):  # nothing to read after all; TLS refuses flags
        return False
    except OSError:  # reset, or no longer a socket
        return True


def new_control(timeout_s: float) -> GenerationControl:
    """A request's control, its deadline `timeout_s` from now (call it just before the submit)."""
    return GenerationControl(deadline=time.monotonic() + timeout_s)


def run_watched(served, task: str, items: list, control: GenerationControl,
                on_done: Callable[[Future], None] | None = None) -> list:
    """Run `items` (which carry `control`) through the model's batcher and wait for
    their outputs, stopping them if the client goes or the deadline passes.

    `on_done` is called with the future when the pass that ran them is over,
    also after this request was answered 504 or 499: that is where what a
    stopped generation produced gets counted."""
    timeout_s = served.batch_settings.timeout_s
    future = served.run_nowait(task, items)
    if on_done is not None:
        future.add_done_callback(on_done)
    # A run made for an account outside any request (an asynchronous prediction) has no client to watch.
    sock = client_socket(request.environ) if has_request_context() else None
    check_every_s = max(0.01, current_settings().client_gone_check_s)
    while True:
        remaining = control.deadline - time.monotonic()
        if remaining <= 0:
            raise _stopped(control, future, DEADLINE, timeout_s)
        done, _pending = wait_for([future], timeout=min(check_every_s, remaining))
        if done:
            outputs = future.result()  # the batcher's own errors (dropped past its deadline, failed) raise here
            if control.stopped == DEADLINE:  # the runner reached the deadline first
                raise _deadline_error(timeout_s)
            return outputs
        if sock is not None and has_gone(sock):
            raise _stopped(control, future, CANCELLED, timeout_s)


def _stopped(control: GenerationControl, future: Future, reason: str, timeout_s: float) -> ApiError:
    control.stop(reason)  # rows running stop at their next token ...
    future.cancel()  # ... and a request still queued never starts
    if reason == DEADLINE:
        return _deadline_error(timeout_s)
    return ClientClosedRequest("The client closed its connection before the generation finished: it was stopped.")


def _deadline_error(timeout_s: float) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"The generation did not finish within {timeout_s:g}s (INFER_REQUEST_TIMEOUT_S) and was stopped. "
        "Ask for fewer tokens, or retry when the model is less busy.")
