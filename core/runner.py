"""One shape for background work: builds (uploads/builder.py), dataset parses
(training/parsing.py), training jobs (training/jobs.py) and asynchronous
predictions (predictions/runner.py).

Each kind is a table of rows with a status and a lease (core/leases.py), claimed
fairly between accounts, each capped (core/fair_claims.py). What is the same for
every kind lives here, written once:

- the claim: `claim()` leases the next due row (fairest account first), setting
  the kind's `claimed_values()`; `run_claimed(row_id)` claims one named row (a
  queue's message) and runs it; `due()` lists what could be claimed now;
- the lease: `renewing(row_id)` keeps a row's lease renewed while it runs;
  `hand_back(row_id)` ends it at once, so another process takes the row over
  without waiting for it to run out;
- the embedded loop (`start`): one thread looks for work every `poll_s` seconds,
  or at once when woken (`wake`: work was submitted here, or a run ended), and
  runs up to `slots` rows at once, each on a thread of its own;
- `stop()`: take no new row; what runs is the kind's to end (`stop_runs`).

A kind says only what is its own: `kind`, `queue`, `table`, `run(row_id)`, and
optionally `claimed_values`, `upkeep` (before each look, and a queue worker's
sweep), `after_look`, `stop_runs`, `start_background`/`stop_background` (threads
a queue worker runs beside its jobs). core/work.py runs the same runner embedded
or from a queue.

Flask-free: the builder, the trainers and their children import this.
"""

import logging
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, ClassVar

from core import leases, work_events

log = logging.getLogger(__name__)


class Runner:
    """The base of every kind of background work (see the module's docstring)."""

    kind: ClassVar[str]  # "build" | "parse" | "train" | "predict": what core/work.py submits
    queue: ClassVar[str]  # its RQ queue (core/work_queue.py), so short work never waits behind long
    table: ClassVar[Any]  # the ORM class of its rows: an id, a status, a lease_until
    # A queue worker told to stop may cut a run short (core/work_queue.py raises
    # HandBack into it) and hand its row back. False: `stop()` ends the run
    # itself (a training job goes back to the queue) or lets a short one finish.
    cut_short: ClassVar[bool] = True
    # Upkeep on a thread of its own rather than before each look (predictions:
    # retention must not wait for a free slot).
    upkeep_apart: ClassVar[bool] = False

    def __init__(self, sessions, claims, lease: timedelta, poll_s: float, slots: int = 1):
        self.sessions = sessions
        self.claims = claims  # core/fair_claims.py FairClaims of this kind
        self.lease = lease
        self.poll_s = poll_s
        self.slots = max(1, int(slots))
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._runs: dict = {}  # row id -> the thread running it here (embedded)
        self._runs_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # --- what each kind says ----------------------------------------------------------

    def run(self, row_id) -> None:
        """Run a row this process claimed, to its end, recording the outcome."""
        raise NotImplementedError

    def claimed_values(self) -> dict:
        """Columns a claim sets besides the lease (its status, its start...)."""
        return {}

    def upkeep(self) -> None:
        """Before each look for work (embedded), and in a queue worker's sweep."""

    def after_look(self) -> None:
        """After each look for work (embedded), and after a queue worker's upkeep."""

    def stop_runs(self) -> None:
        """After stop(): end this process's runs, or let them finish (the default)."""

    def start_background(self) -> None:
        """Threads a queue worker runs beside its jobs while it works."""

    def stop_background(self) -> None:
        pass

    # --- claiming -----------------------------------------------------------------------

    def due(self, now=None) -> list:
        """Rows claimable now, fairest account first, as many of each account's as
        its cap leaves room for."""
        return self.claims.due_ids(self.sessions, now)

    def claim(self):
        """Lease the next due row, fairly between accounts; None when none may run now."""
        return self.claims.claim(self.sessions, **self.claimed_values())

    def run_claimed(self, row_id) -> bool:
        """Claim this row if it is still due and its account under its cap, and run
        it to its end (True); False, doing nothing, otherwise (a queue's message
        delivered twice, or for work already done)."""
        if not self.claims.claim_row(self.sessions, row_id, **self.claimed_values()):
            return False
        self.run(row_id)
        return True

    def hand_back(self, row_id) -> None:
        """This process stops mid-run: the row is claimable again at once."""
        leases.release(self.sessions, self.table, row_id)

    @contextmanager
    def renewing(self, row_id):
        """Keep the row's lease renewed for as long as the block runs."""
        done = threading.Event()
        threading.Thread(target=leases.keep_renewed, args=(self.sessions, self.table, row_id, self.lease, done),
                         name=f"lease {self.kind} {row_id}", daemon=True).start()
        try:
            yield
        finally:
            done.set()

    # --- the embedded loop ----------------------------------------------------------------

    def start(self) -> None:
        self._start_thread(self._loop, self.kind)
        if self.upkeep_apart:
            self._start_thread(self._upkeep_loop, f"{self.kind}-upkeep")

    def wake(self) -> None:
        """Look for work now (something was submitted here, or a run ended)."""
        self._wake.set()

    def stop(self) -> None:
        """Take no new row; then the kind's `stop_runs`."""
        self._stopped.set()
        self._wake.set()
        self.stop_runs()

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def running(self) -> list:
        """The rows this process's loop runs now."""
        with self._runs_lock:
            return list(self._runs)

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for each of the loop's threads to end."""
        with self._runs_lock:
            threads = [*self._threads, *self._runs.values()]
        for thread in threads:
            thread.join(timeout=timeout)

    def _start_thread(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            try:
                if not self.upkeep_apart:
                    self.upkeep()
                self._run_due()
                self.after_look()
            except Exception:  # the loop must outlive anything the database or a kind throws
                log.exception("%s loop", self.kind)
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def _run_due(self) -> None:
        """Claim and start rows while a slot is free and one may run."""
        while not self._stopped.is_set() and len(self.running()) < self.slots:
            row_id = self.claim()
            if row_id is None:
                return
            thread = threading.Thread(target=self._run_here, args=(row_id,), name=f"{self.kind} {row_id}",
                                      daemon=True)
            with self._runs_lock:
                self._runs[row_id] = thread
            thread.start()

    def _run_here(self, row_id) -> None:
        started = time.monotonic()
        try:
            self.run(row_id)
        except Exception:  # a kind records its own failures; this is one it did not expect
            log.exception("%s %s", self.kind, row_id)
        finally:
            work_events.run_ended(self, row_id, time.monotonic() - started)
            with self._runs_lock:
                self._runs.pop(row_id, None)
            self._wake.set()  # a slot came free

    def _upkeep_loop(self) -> None:
        while not self._stopped.wait(self.poll_s):
            try:
                self.upkeep()
            except Exception:  # the database may be away for a moment
                log.exception("%s upkeep", self.kind)
