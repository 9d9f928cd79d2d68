"""Background work on a queue: with INFER_QUEUE_URL, web processes hand builds,
dataset parses, training jobs and asynchronous predictions to Redis, and worker
processes (`flask --app wsgi worker`, app/worker_cli.py) run them.

RQ rather than Celery: Redis is the only broker we need, a job here is one
plain function call with a row id, and the database, not the broker, decides
who runs what. A message only says "row R of kind K may have work": the worker
claims the row with the same conditional UPDATE and lease as the embedded
runners (core/leases.py), so a message delivered twice, or for work already
done, runs nothing. Celery's acknowledgements and visibility timeouts would
duplicate what the leases already do, with a larger dependency to carry.

Nothing is lost with a message: every worker sweeps the database every
INFER_QUEUE_SWEEP_S seconds and enqueues again the rows that are due (waiting
while no message for them waits in Redis, e.g. after Redis restarted or was
unreachable when the work was submitted; or claimed by a worker that died, its
lease run out), and runs the runners' upkeep (uploads noticed in S3, old
predictions removed...). Each kind has its own RQ queue, so a prediction never
waits behind a ten-minute training job in a worker that serves both queues
first-come; a worker takes the queues in the order given (short work first by
default).

Fair between accounts: a message's row is only a hint. The worker that takes
it claims the next row of that kind as the embedded runners do, fairly between
accounts and under each account's cap (core/fair_claims.py), so a backlog one
account queued first does not hold back a row another account queued later.
A message that finds nothing it may run (its row's account is at its cap) is
spent, not lost: the row stays due, and when a run of that kind ends the
worker sends a message for the next due row that has none waiting (the sweep
does too), so a capped account's rows run as its running ones end.
"""

import logging
import os
import signal
import socket
import threading
import time

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from core import work_events
from core.settings import Settings

log = logging.getLogger(__name__)

# The one function a worker runs: a message naming any other is refused (Redis
# is trusted like the database, but a worker need not run whatever it holds).
PERFORM = "core.work_queue.perform"
KEY_PREFIX = "infer:work:"
# The id of the last message sent for a row, to tell whether one still waits;
# only a hint, so it may expire.
POINTER_TTL_S = 7 * 86_400
FAILED_JOB_TTL_S = 86_400
# Due rows looked at, fairest first, for one whose message was spent, when a run ends.
RESEND_LOOKS = 20

_worker_work = None  # the QueueWork of this worker process (perform runs in it)


class HandBack(BaseException):
    """Raised into a running build or parse when its worker is told to stop:
    a BaseException, so the work's own `except Exception` does not record it
    as a failure."""


class QueueWork:
    """app.extensions["work"] with a queue: submit enqueues; workers run."""

    queued = True

    def __init__(self, config: Settings):
        self.config = config
        self.url = config.queue_url
        self.sweep_s = config.queue_sweep_s
        # How long a message sent is taken to be on its way (the sweep leaves
        # its row alone meanwhile): far less than any lease.
        self.grace_ms = int(max(5.0, 2 * self.sweep_s) * 1000)
        self.runners: dict = {}
        # Short timeouts: Redis being away must not hold a user's request long.
        self.redis = Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)
        self.queues: dict = {}  # queue name -> its RQ Queue, one per runner (core/runner.py Runner.queue)
        self.current: tuple | None = None  # (kind, row id) this worker runs now
        self.stopping = False

    def add(self, runner) -> None:
        self.runners[runner.kind] = runner
        self.queues[runner.queue] = Queue(runner.queue, connection=self.redis, serializer=JSONSerializer)

    def _queue(self, kind: str) -> Queue:
        return self.queues[self.runners[kind].queue]

    # --- handing work over ----------------------------------------------------------

    def submit(self, kind: str, row_id) -> None:
        """Say that the row has work. The row is already committed: if Redis is
        away the sweep enqueues it later, so this logs and never fails."""
        try:
            self._enqueue(kind, row_id)
        except RedisError as exc:
            log.warning("queue unreachable; %s %s waits for a worker's sweep: %s", kind, row_id, exc)

    def _enqueue(self, kind: str, row_id) -> None:
        job = self._queue(kind).enqueue_call(
            PERFORM, args=(kind, row_id), timeout=-1, result_ttl=0, failure_ttl=FAILED_JOB_TTL_S,
            description=f"{kind} {row_id}")
        with self.redis.pipeline() as pipe:
            pipe.set(f"{KEY_PREFIX}{kind}:{row_id}", job.id, ex=POINTER_TTL_S)
            pipe.set(f"{KEY_PREFIX}sent:{kind}:{row_id}", 1, px=self.grace_ms)
            pipe.execute()

    def waiting(self, kind: str, row_id) -> bool:
        """Whether a message for this row still waits in its queue."""
        job_id = self.redis.get(f"{KEY_PREFIX}{kind}:{row_id}")
        return job_id is not None and self._queue(kind).get_job_position(job_id.decode()) is not None

    def sweep(self) -> int:
        """Run each runner's upkeep and enqueue its due rows that have no message
        waiting; the number enqueued."""
        enqueued = 0
        for kind, runner in list(self.runners.items()):
            try:
                runner.upkeep()
                runner.after_look()
                for row_id in runner.due():
                    enqueued += self._enqueue_if_lost(kind, row_id)
            except RedisError as exc:
                log.warning("sweep: queue unreachable: %s", exc)
                break
            except Exception:  # the database may be away for a moment; the next sweep may work
                log.exception("sweep of %s", kind)
        return enqueued

    def _enqueue_if_lost(self, kind: str, row_id) -> bool:
        if self.waiting(kind, row_id):
            return False
        # Not if a message went out lately: a worker may have taken it and not
        # claimed the row yet. And several workers sweep: one of them sends it.
        if not self.redis.set(f"{KEY_PREFIX}sent:{kind}:{row_id}", 1, nx=True, px=self.grace_ms):
            return False
        self._enqueue(kind, row_id)
        log.info("sweep: %s %s was due with no message waiting; enqueued", kind, row_id)
        return True

    # --- running work (in a worker) -------------------------------------------------

    def perform(self, kind: str, row_id) -> None:
        runner = self.runners.get(kind)
        if runner is None:
            log.warning("no runner for %s work in this process; %s left for another worker", kind, row_id)
            return
        if self.stopping:  # stopped between taking the message and starting: pass it on
            self.submit(kind, row_id)
            return
        claimed = runner.claim()  # the next of its kind, fairly between accounts: maybe not row_id
        if claimed is None:
            # Nothing may run now: row_id is done, or its account is at its cap.
            # Its message is spent: forget that it was sent, so that the end of
            # a run (below) or the sweep sends it again once it may run.
            log.info("%s %s: nothing may run now (done, or its account at its cap); sent again when it may",
                     kind, row_id)
            self._after_run(kind, [row_id], runner, send_next=False)
            return
        if claimed != row_id:
            log.info("%s %s: its message runs %s, fairer between accounts", kind, row_id, claimed)
        self.current = (kind, claimed)
        started = time.monotonic()
        try:
            runner.run(claimed)
        except HandBack:
            runner.hand_back(claimed)
            log.info("stopping: %s %s handed back", kind, claimed)
            self.submit(kind, claimed)
            if row_id != claimed:
                self._after_run(kind, [row_id], runner, send_next=False)
            return
        finally:
            self.current = None
            work_events.run_ended(runner, claimed, time.monotonic() - started)
        # row_id's message was spent on this run (when another row was fairer,
        # row_id is still due, with no message). A place came free: the next
        # due row whose message was spent runs now, not at the next sweep (and
        # a training job that went back to the queue, its process dead or this
        # worker stopping, is sent on).
        self._after_run(kind, [row_id, claimed], runner, send_next=True)

    def _after_run(self, kind: str, spent: list, runner, send_next: bool) -> None:
        """Forget that messages were sent for the `spent` rows, so that the sweep,
        or this, may send them again at once (a message that still waits is seen
        waiting), then send one for the next due row that has none."""
        try:
            self.redis.delete(*(f"{KEY_PREFIX}sent:{kind}:{row_id}" for row_id in spent))
            if send_next:
                for due_id in runner.due()[:RESEND_LOOKS]:
                    if self._enqueue_if_lost(kind, due_id):
                        return
        except RedisError as exc:
            log.warning("queue unreachable; the sweep sends what is due: %s", exc)
        except Exception:  # the database may be away for a moment; the sweep looks again
            log.exception("looking for the next %s to send", kind)

    def stop_running(self) -> None:
        """The worker was told to stop (SIGTERM): hand the running work back now."""
        self.stopping = True
        current = self.current
        if current is None:
            return
        runner = self.runners[current[0]]
        if runner.cut_short:
            raise HandBack()  # into the work, which runs in this (the main) thread
        threading.Thread(target=runner.stop, name="stop", daemon=True).start()

    def run_worker(self, queue_names, burst: bool = False, name: str | None = None) -> None:
        """Run jobs from these queues until stopped (or, in a burst, until they
        are empty), sweeping meanwhile."""
        global _worker_work
        _worker_work = self
        # The worker's own connection: RQ sets its read timeout to its long blocking waits.
        worker = Worker([self.queues[queue] for queue in queue_names], connection=Redis.from_url(self.url),
                        name=name or f"{socket.gethostname()}.{os.getpid()}", serializer=JSONSerializer)
        worker.work_queue = self
        worker.listens_for_commands = not burst
        stopped = threading.Event()
        beside = [runner for runner in self.runners.values() if runner.queue in queue_names]
        for runner in beside:
            runner.start_background()
        if burst:
            self.sweep()
        else:
            threading.Thread(target=self._sweep_loop, args=(stopped,), name="sweep", daemon=True).start()
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            worker.work(burst=burst, logging_level="INFO")
        finally:
            stopped.set()
            for runner in beside:
                runner.stop_background()
            for sig, handler in handlers.items():  # RQ's, bound to this worker, go with it
                signal.signal(sig, handler)

    def _sweep_loop(self, stopped: threading.Event) -> None:
        while True:
            self.sweep()
            if stopped.wait(self.sweep_s):
                return


class Worker(SimpleWorker):
    """RQ's SimpleWorker runs each job in its own process (no fork per job), so
    the models a prediction loads stay loaded for the next; builds and training
    run in child processes of their own anyway."""

    work_queue: QueueWork
    listens_for_commands = True

    def subscribe(self):
        # RQ's commands (`rq` CLI: stop a worker...) come by pub/sub, whose
        # thread takes a second to end: not worth it for a burst.
        if self.listens_for_commands:
            super().subscribe()

    def execute_job(self, job, queue):
        if job.func_name != PERFORM:
            log.error("refused job %s: it calls %s, not this service's work", job.id, job.func_name)
            job.delete()
            return
        super().execute_job(job, queue)

    def request_stop(self, signum, frame):
        super().request_stop(signum, frame)  # takes no new job (raises StopRequested when idle)
        self.work_queue.stop_running()


def perform(kind: str, row_id) -> None:
    """The function every queued job calls (PERFORM), in a worker process."""
    if _worker_work is None:
        raise RuntimeError("app.work_queue.perform runs in a worker started by `flask --app wsgi worker`")
    _worker_work.perform(kind, row_id)
