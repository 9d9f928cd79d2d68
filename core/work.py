"""Where background work is handed over: builds, dataset parses, training jobs,
asynchronous predictions and batches.

The database is the record of every piece of work (a row with a status and a
lease, core/leases.py); this only says "there is something to do". Embedded
(the default, no setting), each web process runs the runners itself and a
submission wakes this process's runner at once (the others find the row at
their next poll). With INFER_QUEUE_URL the submission goes to a queue and
separate worker processes run it (core/work_queue.py).

Work is claimed fairly between accounts, each capped (core/fair_claims.py).
Every kind is a runner of one shape (core/runner.py: kind, queue, due, claim,
run, run_claimed, upkeep, after_look, hand_back, stop...), so the same runner
works embedded and from a queue. This module does not import the queue's
(core/work_queue.py imports nothing of it): the arrow points one way.
"""

import logging
import threading

from core.settings import Settings

log = logging.getLogger(__name__)

# With a queue, what a worker takes, in this order, when not told: every
# runner's queue (core/runner.py Runner.queue), short work first.
DEFAULT_QUEUES = ("predictions", "builds", "datasets", "batches", "training")


class EmbeddedWork:
    """The default: every web process runs the work itself, from the database."""

    queued = False

    def __init__(self):
        self.runners: dict = {}

    def add(self, runner) -> None:
        self.runners[runner.kind] = runner

    def submit(self, kind: str, row_id) -> None:
        runner = self.runners.get(kind)
        if runner is not None:
            runner.wake()


def make_work(config: Settings):
    """EmbeddedWork, or with INFER_QUEUE_URL the queue (RQ on Redis)."""
    if config.queue_url:
        from core.work_queue import QueueWork

        return QueueWork(config)
    return EmbeddedWork()


def start_unloading_stale(app) -> threading.Event:
    """A web process with a queue runs no builder loop, which is what unloads the
    user model versions replaced or deleted through other processes: this
    thread does it instead, as often as the builder would look, until the
    event it returns (also app.extensions["unloading_stale"]) is set."""
    every_s = app.extensions["settings"].build_poll_s
    user_models, sessions = app.extensions["user_models"], app.extensions["db"].sessions
    stopped = threading.Event()

    def loop():
        while not stopped.wait(every_s):
            try:
                user_models.unload_stale(sessions)
            except Exception:  # the database may be away for a moment
                log.exception("unloading replaced user model versions")

    threading.Thread(target=loop, name="unload-stale", daemon=True).start()
    app.extensions["unloading_stale"] = stopped
    return stopped
