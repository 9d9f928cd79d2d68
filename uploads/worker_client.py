"""Talk to a user model's worker process; restart it when it crashes, hangs or is killed.

One worker per model version, one call at a time (a lock): user code need not
be thread-safe. A call that takes longer than the timeout kills the worker; the
next call starts a fresh one. The worker's address space is capped, so a memory
blow-up kills the worker, not the service.
"""

import json
import logging
import os
import resource
import select
import subprocess
import threading
import time

from app.errors import ApiError

log = logging.getLogger(__name__)
WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "user_worker.py")


class WorkerFailed(ApiError):
    status = 502


class WorkerTimeout(ApiError):
    status = 504


class WorkerProcess:
    def __init__(self, name: str, python: str, model_dir: str, model_format: str,
                 call_timeout_s: float, load_timeout_s: float, memory_limit_mb: int):
        self.name = name
        self.python = python
        self.model_dir = model_dir
        self.format = model_format
        self.call_timeout_s = call_timeout_s
        self.load_timeout_s = load_timeout_s
        self.memory_limit_bytes = memory_limit_mb * 2**20
        self._process: subprocess.Popen | None = None
        self._received = b""  # what the worker wrote past the last full line
        self._lock = threading.Lock()
        self.restarts = 0

    def _limit_memory(self):  # runs in the child, before exec
        if self.memory_limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory_limit_bytes, self.memory_limit_bytes))

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [self.python, WORKER_SCRIPT, self.model_dir, self.format],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=0, preexec_fn=self._limit_memory,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._received = b""
        threading.Thread(target=self._drain_stderr, args=(self._process,), daemon=True).start()
        message = self._read(self.load_timeout_s, "loading")
        if "error" in message:
            self._kill()
            raise WorkerFailed(f"Model {self.name} could not load: {message['error']}")

    def _drain_stderr(self, process) -> None:
        for line in process.stderr:
            log.info("[%s] %s", self.name, line.decode(errors="replace").rstrip())

    def _read(self, timeout: float, doing: str) -> dict:
        """The worker's next line, waiting at most `timeout` (select on the pipe:
        no thread per call, and the wait ends the moment the worker answers)."""
        deadline = time.monotonic() + timeout
        stdout = self._process.stdout.fileno()
        while b"\n" not in self._received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise WorkerTimeout(
                    f"Model {self.name} did not answer within {timeout:g}s while {doing}; it was restarted."
                )
            if not select.select([stdout], [], [], remaining)[0]:
                continue
            chunk = os.read(stdout, 1 << 16)
            if not chunk:
                code = self._process.wait()
                self._process = None
                raise WorkerFailed(f"Model {self.name}'s worker exited (code {code}) while {doing}; it will be restarted.")
            self._received += chunk
        line, _, self._received = self._received.partition(b"\n")
        return json.loads(line)

    def _send(self, data: bytes) -> None:
        # An unbuffered pipe may take a large message in several writes.
        view = memoryview(data)
        while view:
            view = view[self._process.stdin.write(view):]

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
            self.restarts += 1

    def call(self, task: str, task_input):
        with self._lock:
            if self._process is None or self._process.poll() is not None:
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
        return message["output"]

    def close(self) -> None:
        with self._lock:
            if self._process is not None:
                self._process.kill()
                self._process.wait()
                self._process = None
