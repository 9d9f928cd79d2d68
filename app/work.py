"""Where background work is handed over: builds, dataset parses, training jobs
and asynchronous predictions.

The database is the record of every piece of work (a row with a status and a
lease, app/leases.py); this only says "there is something to do". Embedded
(the default, no setting), each web process runs the runners itself and a
submission wakes this process's runner at once (the others find the row at
their next poll). With INFER_QUEUE_URL the submission goes to a queue and
separate worker processes run it (app/work_queue.py).

Work is claimed fairly between accounts, each capped (app/fair_claims.py).
A runner offers:
    kind                  "build" | "parse" | "train" | "predict"
    wake()                look for work now (embedded)
    due(now) -> ids       rows claimable now (waiting, or their lease ran out),
                          fairest account first, each account's as many as its
                          cap leaves room for
    claim() -> id | None  lease the next due row, fairly between accounts; None
                          when none may run now
    run(row_id)           run a row this process claimed, to the end
    run_claimed(row_id)   claim that row if it is still claimable and its
                          account under its cap, and run it to the end (True);
                          False, doing nothing, otherwise
and, optionally, for a queue worker (app/work_queue.py):
    upkeep()              what its loop does besides running work (notice the
                          uploads that arrived in S3...), run by the sweep
    start_background()    threads the worker runs beside its jobs while it
    stop_background()     works (the prediction runner's webhook pool)
    hand_back(row_id)     the worker stops mid-run: the run is cut short and
                          this makes the row claimable again at once
    stop()                the worker stops mid-run and there is no hand_back:
                          end the run soon (a training job goes back to the
                          queue) or let a short one finish
"""

import logging
import threading

from core.settings import Settings

log = logging.getLogger(__name__)

# With a queue: each kind's queue (RQ), so a prediction never waits behind a
# long training job; and what a worker takes, in this order, when not told.
QUEUES = {"predict": "predictions", "build": "builds", "parse": "datasets", "train": "training"}
DEFAULT_QUEUES = ("predictions", "builds", "datasets", "training")


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


class KindRunner:
    """One kind of work of a runner that does several (TrainingRunner: "parse"
    and "train") as a runner of its own; hooks are the optional methods above."""

    def __init__(self, kind: str, wake, due, run_claimed, **hooks):
        self.kind, self.wake, self.due, self.run_claimed = kind, wake, due, run_claimed
        for name, hook in hooks.items():
            setattr(self, name, hook)


def make_work(config: Settings):
    """EmbeddedWork, or with INFER_QUEUE_URL the queue (RQ on Redis)."""
    if config.queue_url:
        from .work_queue import QueueWork

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
