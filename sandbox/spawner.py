"""Start sandboxes from one thread that lives as long as the service process.

bwrap's --die-with-parent (PR_SET_PDEATHSIG) fires when the *thread* that
forked it ends, not the process: a worker started from a request thread of a
server that makes a thread per request (werkzeug's, `flask run`) was killed as
soon as that request was answered, and the next request started it again. Every
spawn goes through this one thread instead, so a sandbox dies with the service,
never with the thread that happened to ask for it.
"""

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

_lock = threading.Lock()
_requests: queue.SimpleQueue | None = None
_owner_pid: int | None = None


def _serve(requests: queue.SimpleQueue) -> None:
    while True:
        start, future = requests.get()
        try:
            future.set_result(start())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller as it is
            future.set_exception(exc)


def spawn(start: Callable):
    """start() run on the spawning thread; its result, or its exception raised here."""
    global _requests, _owner_pid
    with _lock:
        if _owner_pid != os.getpid():  # first use, or a forked child (its parent's thread is not in it)
            _requests = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(_requests,), name="sandbox-spawner", daemon=True).start()
            _owner_pid = os.getpid()
        requests = _requests
    future: Future = Future()
    requests.put((start, future))
    return future.result()  # a fork and an exec: the command's own start is not waited for
