"""Talk to a user model's worker process; restart it when it crashes, hangs or is killed.

One worker per model version, one call at a time (a lock): user code need not
be thread-safe. The worker runs in the model's sandbox (model_sandbox.py); a
call that takes longer than the timeout, or answers more than the reply limit,
kills it with everything it started, and the next call starts a fresh one.
Once the model is closed (unloaded, deleted, replaced) it refuses calls and
never starts a worker again: a request still queued for it gets a 503.
"""

import io
import json
import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable

from core.errors import ApiError, ModelUnavailable

log = logging.getLogger(__name__)

# A line of a worker's stderr longer than this is cut in the service log.
STDERR_LINE_CHARS = 2000
# How often a call waiting on its worker looks whether the model was closed.
CLOSE_CHECK_S = 0.5
# Deepest answer passed on: the JSON writer of responses stops near 255 levels.
MAX_REPLY_DEPTH = 200


def _depth(value) -> int:
    """How deeply lists and objects nest in `value` (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


class WorkerFailed(ApiError):
    status = 502


class WorkerTimeout(ApiError):
    status = 504


class WorkerProcess:
    def __init__(self, name: str, launch: Callable[[], subprocess.Popen], stop: Callable[[subprocess.Popen], None],
                 call_timeout_s: float, load_timeout_s: float, max_reply_bytes: int):
        self.name = name
        self._launch = launch
        self._stop = stop
        self.call_timeout_s = call_timeout_s
        self.load_timeout_s = load_timeout_s
        self.max_reply_bytes = max_reply_bytes
        self._process: subprocess.Popen | None = None
        self._received = bytearray()  # what the worker wrote past the last full line
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0

    def _start(self) -> None:
        self._process = self._launch()
        self._received = bytearray()
        threading.Thread(target=self._drain_stderr, args=(self._process,), daemon=True).start()
        message = self._read(self.load_timeout_s, "loading")
        if "error" in message:
            self._kill()
            raise WorkerFailed(f"Model {self.name} could not load: {message['error']}")

    def _drain_stderr(self, process) -> None:
        # readline with a size: a "line" of gigabytes without a newline is read
        # (and logged) in pieces, never held whole; buffered, as the pipe is
        # unbuffered and its readline would read a byte per system call.
        stderr = io.BufferedReader(process.stderr, 1 << 16)
        while line := stderr.readline(STDERR_LINE_CHARS):
            log.info("[%s] %s", self.name, line.decode(errors="replace").rstrip())

    def _read(self, timeout: float, doing: str) -> dict:
        """The worker's next line, waiting at most `timeout` (select on the pipe:
        no thread per call, and the wait ends the moment the worker answers)."""
        deadline = time.monotonic() + timeout
        stdout = self._process.stdout.fileno()
        searched = 0  # bytes already known to hold no newline: each byte is looked at once
        while (end := self._received.find(b"\n", searched)) < 0:
            searched = len(self._received)
            if searched > self.max_reply_bytes:
                self._kill()
                raise WorkerFailed(f"Model {self.name} answered more than {self.max_reply_bytes} bytes "
                                   "(INFER_WORKER_MAX_REPLY_MB); it was restarted.")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise WorkerTimeout(
                    f"Model {self.name} did not answer within {timeout:g}s while {doing}; it was restarted."
                )
            if self._closed:  # close() killed it, or is about to: do not wait for the timeout
                self._kill()
                raise ModelUnavailable.just_unloaded(self.name)
            if not select.select([stdout], [], [], min(remaining, CLOSE_CHECK_S))[0]:
                continue
            chunk = os.read(stdout, 1 << 20)
            if not chunk:
                if self._closed:
                    self._kill()
                    raise ModelUnavailable.just_unloaded(self.name)
                code = self._process.wait()
                self._stop(self._process)
                self._process = None
                raise WorkerFailed(f"Model {self.name}'s worker exited (code {code}) while {doing}; it will be restarted.")
            self._received += chunk
        line = bytes(self._received[:end])
        del self._received[:end + 1]
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            self._kill()
            raise WorkerFailed(f"Model {self.name}'s worker wrote something that is not its protocol; it was restarted.")
        if _depth(message) > MAX_REPLY_DEPTH:
            raise WorkerFailed(f"Model {self.name} answered a value nested more than {MAX_REPLY_DEPTH} levels deep; "
                               "answer a flatter structure.")
        return message

    def _send(self, data: bytes) -> None:
        # An unbuffered pipe may take a large message in several writes.
        view = memoryview(data)
        while view:
            view = view[self._process.stdin.write(view):]

    def _kill(self) -> None:
        if self._process is not None:
            self._stop(self._process)
            self._process = None
            self.restarts += 1

    def call(self, task: str, task_input):
        with self._lock:
            if self._closed:
                raise ModelUnavailable.just_unloaded(self.name)
            if self._process is None or self._process.poll() is not None:
                if self._process is not None:
                    self._stop(self._process)  # whatever it left running in its sandbox goes too
                self._process = None
                self._start()
            try:
                self._send(json.dumps({"task": task, "input": task_input}).encode() + b"\n")
            except (BrokenPipeError, OSError):
                self._kill()
                raise WorkerFailed(f"Model {self.name}'s worker had exited; it will be restarted.") from None
            message = self._read(self.call_timeout_s, "answering")
        if "error" in message:
            raise WorkerFailed(f"Model {self.name} failed: {message['error']}")
        if "output" not in message:
            raise WorkerFailed(f"Model {self.name}'s worker answered without an output.")
        return message["output"]

    def close(self) -> None:
        """Kill the worker and everything it started; refuse calls from now on.

        Not behind the call lock first: a call in progress (a model hanging
        for its whole timeout) must not keep the worker alive after its model
        was deleted. The call sees the worker gone and ends."""
        self._closed = True
        running = self._process
        if running is not None:
            self._stop(running)
        with self._lock:
            if self._process is not None:
                self._stop(self._process)
                self._process = None
