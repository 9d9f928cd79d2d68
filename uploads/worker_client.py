"""Talk to a user model's worker process; restart it when it crashes, hangs or is killed.

One worker per model version, one call at a time (a lock): user code need not
be thread-safe. The worker runs in the model's sandbox (model_sandbox.py).

Nothing here waits without a deadline, as the worker is the model author's
code: taking the lock, writing the request (a worker that stops reading its
stdin fills the pipe, and a blocking write would never return), and reading
the reply are each bounded by the call timeout (loading by the load timeout),
and a caller may pass an earlier deadline for the whole call. A worker that
misses it, answers something that is not the protocol, or answers more than
the reply limit is killed with everything it started (504 for a timeout, 502
otherwise), and the next call starts a fresh one. A call still waiting for the
lock when the call timeout has passed gets a 504: the model is busy. Once the
model is closed (unloaded, deleted, replaced) it refuses calls and never
starts a worker again: a request still queued for it gets a 503; close()
itself never waits for a call in progress.
"""

import io
import json
import logging
import os
import select
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable

from core.errors import ApiError, ModelUnavailable

from .build_errors import Scrubber

log = logging.getLogger(__name__)

# A line of a worker's stderr longer than this is cut in the service log.
STDERR_LINE_CHARS = 2000
# How often a call waiting on its worker looks whether the model was closed.
CLOSE_CHECK_S = 0.5
# How long a worker whose output ended gets to exit before it is killed.
EXIT_WAIT_S = 1.0
# Deepest answer passed on: the JSON writer of responses stops near 255 levels.
MAX_REPLY_DEPTH = 200
# The last lines of a worker's output kept for its build log (each cut at STDERR_LINE_CHARS).
OUTPUT_TAIL_LINES = 100
# How long a worker that ended gets to finish writing its output before it is read.
OUTPUT_WAIT_S = 2.0
# What the messages an account sees call the model: the request names it; the
# worker's own name is the service's cache key, which is for the service log.
SHOWN_AS = "The model"
# A model failure's report: the fields the service keeps, each cut at this many characters.
FAILURE_FIELDS = ("step", "type", "message", "sentence", "file", "traceback")
FAILURE_FIELD_CHARS = 16_000


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
    """`failure`: the worker's report of the model's own failure (user_worker.py), or None;
    `summary`: what failed, without what happens next (for a build's message)."""

    status = 502

    def __init__(self, message: str, failure: dict | None = None, summary: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.failure = failure
        self.summary = summary


class WorkerTimeout(ApiError):
    status = 504

    def __init__(self, message: str, summary: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.summary = summary


def _just_unloaded() -> ModelUnavailable:
    return ModelUnavailable(f"{SHOWN_AS} was just unloaded. Retry.", headers={"Retry-After": "1"})


def _failure(message: dict) -> dict | None:
    """The report a worker sent, kept to known text fields (the model's code wrote it)."""
    failure = message.get("failure")
    if not isinstance(failure, dict):
        return None
    kept = {name: str(failure[name])[:FAILURE_FIELD_CHARS] for name in FAILURE_FIELDS if failure.get(name) is not None}
    if isinstance(failure.get("line"), int):
        kept["line"] = failure["line"]
    return kept


class WorkerProcess:
    def __init__(self, name: str, launch: Callable[[], subprocess.Popen], stop: Callable[[subprocess.Popen], None],
                 call_timeout_s: float, load_timeout_s: float, max_reply_bytes: int,
                 why_stopped: Callable[[subprocess.Popen], str | None] = lambda process: None):
        self.name = name
        self._launch = launch
        self._stop = stop
        # Why the sandbox stopped an ended worker ("went over its memory limit..."), or None.
        self._why_stopped = why_stopped
        self.call_timeout_s = call_timeout_s
        self.load_timeout_s = load_timeout_s
        self.max_reply_bytes = max_reply_bytes
        self._process: subprocess.Popen | None = None
        self._received = bytearray()  # what the worker wrote past the last full line
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0
        self._output: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        self._drainer: threading.Thread | None = None
        self._scrub = Scrubber()

    @property
    def process(self) -> subprocess.Popen | None:
        """The running worker (None when none runs: not started yet, or killed)."""
        return self._process

    @property
    def busy(self) -> bool:
        """Whether a call has the worker now."""
        return self._lock.locked()

    def _start(self) -> None:
        self._process = self._launch()
        self._received = bytearray()
        os.set_blocking(self._process.stdin.fileno(), False)  # writes wait in poll, with a deadline
        self._drainer = threading.Thread(target=self._drain_stderr, args=(self._process,), daemon=True)
        self._drainer.start()
        message = self._read(time.monotonic() + self.load_timeout_s, self.load_timeout_s,
                             "INFER_WORKER_LOAD_TIMEOUT_S", "loading")
        if "error" in message:
            self._kill()
            raise self._model_failed("could not load", message)

    def _model_failed(self, what: str | None, message: dict) -> WorkerFailed:
        """The model's code failed: its worker's report, scrubbed (the model wrote it), for the account."""
        failure = _failure(message)
        if failure and failure.get("traceback"):
            log.info("[%s] %s", self.name, failure["traceback"])
        error = self._scrub.line(str(message["error"])[:FAILURE_FIELD_CHARS])
        if failure:
            failure = {name: self._scrub.text(value) if isinstance(value, str) else value
                       for name, value in failure.items()}
        said = f"{SHOWN_AS} {what}: {error}" if what else error
        return WorkerFailed(said, failure=failure, summary=said)

    def _drain_stderr(self, process) -> None:
        # readline with a size: a "line" of gigabytes without a newline is read
        # (and logged) in pieces, never held whole; buffered, as the pipe is
        # unbuffered and its readline would read a byte per system call.
        stderr = io.BufferedReader(process.stderr, 1 << 16)
        while line := stderr.readline(STDERR_LINE_CHARS):
            text = line.decode(errors="replace").rstrip()
            self._output.append(text)
            log.info("[%s] %s", self.name, text)

    def recent_output(self) -> str:
        """The last lines the model's worker wrote (its prints, its libraries' warnings),
        all of them once an ended worker's output is read: for a build's log."""
        drainer = self._drainer
        if drainer is not None and (self._process is None or self._process.poll() is not None):
            drainer.join(OUTPUT_WAIT_S)
        return "\n".join(list(self._output))

    def _wait(self, fd: int, events: int, deadline: float) -> bool:
        """Whether `fd` is ready before the deadline; raises once the model is closed.
        poll, not select: a busy service's descriptors go past select's 1024."""
        if self._closed:  # close() killed the worker, or is about to: do not wait for the timeout
            self._kill()
            raise _just_unloaded()
        poller = select.poll()
        poller.register(fd, events)
        remaining = min(deadline - time.monotonic(), CLOSE_CHECK_S)
        return bool(poller.poll(max(0, remaining) * 1000))

    def _ended(self, doing: str) -> ApiError:
        """The worker closed its pipes: stop what is left of its sandbox, and say why it ended."""
        if self._closed:  # close() killed it
            self._kill()
            return _just_unloaded()
        process, self._process = self._process, None
        try:
            code = process.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:  # it closed its output but lives on: it goes now
            code = None
        self._stop(process)
        self.restarts += 1
        reason = self._why_stopped(process)
        if reason:
            summary = f"{SHOWN_AS} {reason} while {doing}"
        else:
            ended = f"exited (code {code})" if code is not None else "closed its output"
            summary = f"{SHOWN_AS}'s worker {ended} while {doing}"
        return WorkerFailed(f"{summary}; it will be restarted.", summary=summary + ".")

    def _timed_out(self, timeout: float, setting: str, what: str) -> WorkerTimeout:
        self._kill()
        summary = f"{SHOWN_AS} {what.format(f'within {round(timeout, 1):g}s')} ({setting})"
        return WorkerTimeout(f"{summary}; it was restarted.", summary=summary + ".")

    def _read(self, deadline: float, timeout: float, setting: str, doing: str) -> dict:
        """The worker's next line, waiting until the deadline (poll on the pipe:
        no thread per call, and the wait ends the moment the worker answers)."""
        stdout = self._process.stdout.fileno()
        searched = 0  # bytes already known to hold no newline: each byte is looked at once
        while (end := self._received.find(b"\n", searched)) < 0:
            searched = len(self._received)
            if self._received[:1] not in (b"", b"{"):  # every message is a JSON object: no need to wait for more
                self._kill()
                raise WorkerFailed(f"{SHOWN_AS}'s worker wrote something that is not its protocol; "
                                   "it was restarted.")
            if searched > self.max_reply_bytes:
                self._kill()
                raise WorkerFailed(f"{SHOWN_AS} answered more than {self.max_reply_bytes} bytes "
                                   "(INFER_WORKER_MAX_REPLY_MB); it was restarted.")
            if time.monotonic() >= deadline:
                what = "did not finish its answer" if self._received else "did not answer"
                raise self._timed_out(timeout, setting, f"{what} {{}} while {doing}")
            if not self._wait(stdout, select.POLLIN, deadline):
                continue
            chunk = os.read(stdout, 1 << 20)
            if not chunk:
                raise self._ended(doing)
            self._received += chunk
        line = bytes(self._received[:end])
        del self._received[:end + 1]
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            self._kill()
            raise WorkerFailed(f"{SHOWN_AS}'s worker wrote something that is not its protocol; it was restarted.")
        if _depth(message) > MAX_REPLY_DEPTH:
            raise WorkerFailed(f"{SHOWN_AS} answered a value nested more than {MAX_REPLY_DEPTH} levels deep; "
                               "answer a flatter structure.")
        return message

    def _send(self, data: bytes, deadline: float, timeout: float, setting: str) -> None:
        """Write the request as the worker takes it: a worker that stops reading
        fills the pipe (64 KiB), and is killed at the deadline."""
        stdin = self._process.stdin.fileno()
        view = memoryview(data)
        while view:
            if time.monotonic() >= deadline:
                raise self._timed_out(timeout, setting, "stopped reading its input: it did not take its request {}")
            if not self._wait(stdin, select.POLLOUT, deadline):
                continue
            try:
                view = view[os.write(stdin, view):]
            except BlockingIOError:
                continue
            except OSError:  # the worker is gone (EPIPE)
                raise self._ended("reading its request") from None

    def _kill(self) -> None:
        if self._process is not None:
            self._stop(self._process)
            self._process = None
            self.restarts += 1

    def _refuse_if_late(self, deadline: float | None) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise WorkerTimeout(f"{SHOWN_AS} did not get to this request within its deadline "
                                "(INFER_REQUEST_TIMEOUT_S).")

    def _take_lock(self, asked: float, deadline: float) -> None:
        """The worker's lock, waited for until the deadline at most (504: the model is busy)."""
        while not self._lock.acquire(timeout=max(0.0, min(deadline - time.monotonic(), CLOSE_CHECK_S))):
            if self._closed:
                raise _just_unloaded()
            if time.monotonic() >= deadline:
                waited = round(deadline - asked, 1)
                raise WorkerTimeout(
                    f"{SHOWN_AS} is busy: other requests held its worker for the {waited:g}s this one "
                    "could wait (INFER_WORKER_CALL_TIMEOUT_S). Retry later.", headers={"Retry-After": "1"})

    def call(self, task: str, task_input, deadline: float | None = None):
        """The worker's output for one input. `deadline` (time.monotonic()) may
        end the call earlier than the timeouts would: a request's own deadline."""
        asked = time.monotonic()
        request = json.dumps({"task": task, "input": task_input}).encode() + b"\n"
        self._take_lock(asked, min(asked + self.call_timeout_s, deadline if deadline is not None else float("inf")))
        try:
            if self._closed:
                raise _just_unloaded()
            if self._process is None or self._process.poll() is not None:
                if self._process is not None:
                    self._stop(self._process)  # whatever it left running in its sandbox goes too
                self._process = None
                self._refuse_if_late(deadline)  # no new load past the deadline
                self._start()
            self._refuse_if_late(deadline)  # nothing sent yet: the worker is fine, the request is late
            # The exchange gets the call timeout from now on (loading has its own), or what is left of the deadline.
            started = time.monotonic()
            exchange_deadline, timeout, setting = started + self.call_timeout_s, self.call_timeout_s, \
                "INFER_WORKER_CALL_TIMEOUT_S"
            if deadline is not None and deadline < exchange_deadline:
                exchange_deadline, timeout, setting = deadline, deadline - started, \
                    "what was left of INFER_REQUEST_TIMEOUT_S for the request"
            self._send(request, exchange_deadline, timeout, setting)
            message = self._read(exchange_deadline, timeout, setting, "answering")
        finally:
            if self._closed:  # closed during the call: the worker must not outlive its model
                self._kill()
            self._lock.release()
        if "error" in message:
            raise self._model_failed(None, message)
        if "output" not in message:
            raise WorkerFailed(f"{SHOWN_AS}'s worker answered without an output.")
        return message["output"]

    def close(self) -> None:
        """Kill the worker and everything it started; refuse calls from now on.

        Never waits for a call in progress (a model hanging for its whole
        timeout): the worker is killed under it, and the call, seeing the
        model closed, ends at once and leaves nothing running."""
        self._closed = True
        running = self._process
        if running is not None:
            self._stop(running)
        if self._lock.acquire(blocking=False):
            try:
                if self._process is not None:
                    self._stop(self._process)
                    self._process = None
            finally:
                self._lock.release()
