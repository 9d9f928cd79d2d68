"""Runs asynchronous predictions, hands their webhooks to the webhook pool, and deletes old ones.

A prediction is a row (app/db.py Prediction) holding the request as it was
sent. A runner claims it with a lease (app/leases.py), replays the request
through the whole app as its account (predictions/dispatch.py: the same
schemas, limits, batcher and errors as the synchronous call), and records the
answer. A process that dies mid-prediction stops renewing its lease and the
prediction runs again elsewhere, up to INFER_PREDICTION_MAX_ATTEMPTS starts
(a prediction has no side effects, so running it again is safe).

Predictions are claimed fairly between accounts (app/fair_claims.py): the
next goes to the account with the fewest running, and one account runs at most
INFER_ACCOUNT_MAX_RUNNING_PREDICTIONS at once, across every process.

Embedded, every web process runs INFER_PREDICTION_THREADS of them; with a
queue, the workers do (app/work.py). Webhooks are delivered by the pool
(predictions/webhook_pool.py) where the predictions run.
"""

import logging
import threading
from datetime import timedelta

from sqlalchemy import and_, delete, or_, update

from app import leases
from app.db import Prediction, utcnow
from app.fair_claims import FairClaims, WorkKind, leased
from core.settings import Settings
from . import webhooks
from .dispatch import call_as
from .webhook_pool import WebhookPool

log = logging.getLogger(__name__)


def _due(now):
    """Waiting, or claimed by a process that stopped renewing its lease."""
    return or_(Prediction.status == "queued",
               and_(Prediction.status == "running", Prediction.lease_until < now))


PREDICTIONS = WorkKind(Prediction, due=_due, running=leased("running"), oldest_first=Prediction.seq)


class PredictionRunner:
    kind = "predict"

    def __init__(self, app, config: Settings, sessions):
        self.app = app
        self.config = config
        self.sessions = sessions
        self.lease = timedelta(seconds=config.prediction_lease_s)
        self.claims = FairClaims(PREDICTIONS, self.lease, config.account_max_running_predictions)
        self.networks = webhooks.allowed_networks(config.webhook_allowed_networks)
        # Lookups of the pool's calls and of requests checking a new webhook.
        self.resolver = webhooks.Resolver(2 * config.webhook_threads,
                                          config.webhook_resolve_timeout_s)
        self.webhooks = WebhookPool(config, sessions, self.networks, self.resolver)
        self._wake = threading.Condition()
        self._pending_wakes = 0
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- the loops (embedded) ----------------------------------------------------

    def start(self) -> None:
        # One thread polls the database (predictions queued through another
        # process); the others sleep until woken, so an idle process asks once
        # per poll, not once per thread.
        for number in range(self.config.prediction_threads):
            self._threads.append(threading.Thread(target=self._loop, args=(number == 0,), name=f"predictions-{number}",
                                                  daemon=True))
        self._threads.append(threading.Thread(target=self._housekeeping_loop, name="predictions-housekeeping",
                                              daemon=True))
        for thread in self._threads:
            thread.start()
        self.webhooks.start()

    def stop(self) -> None:
        """Take no new prediction; those running finish (their answers are short)."""
        self._stopped.set()
        with self._wake:
            self._wake.notify_all()
        self.webhooks.stop()

    def wake(self) -> None:
        with self._wake:
            self._pending_wakes += 1
            self._wake.notify()

    def _sleep(self, polls: bool) -> None:
        with self._wake:
            if self._pending_wakes == 0:
                self._wake.wait(self.config.prediction_poll_s * (1 if polls else 60))
            self._pending_wakes = max(0, self._pending_wakes - 1)

    def _loop(self, polls: bool) -> None:
        while not self._stopped.is_set():
            try:
                while not self._stopped.is_set() and (row_id := self.claim()) is not None:
                    self.wake()  # there may be more: another thread looks while this one runs
                    self.run(row_id)
            except Exception:  # the loop must survive anything the database throws
                log.exception("prediction loop")
            self._sleep(polls)

    def _housekeeping_loop(self) -> None:
        while not self._stopped.wait(self.config.prediction_poll_s):
            try:
                self.housekeeping()
            except Exception:
                log.exception("prediction housekeeping")

    # --- the runner interface (app/work.py) --------------------------------------

    def due(self, now=None) -> list[str]:
        return self.claims.due_ids(self.sessions, now)

    def claim(self) -> str | None:
        """Take the next due prediction, fairly between accounts (None: none may run now)."""
        return self.claims.claim(self.sessions, **self._claimed_values())

    def run_claimed(self, row_id: str) -> bool:
        """Run this prediction if it is still due and its account under its cap;
        False if not (a queue's message delivered twice)."""
        if not self.claims.claim_row(self.sessions, row_id, **self._claimed_values()):
            return False
        self.run(row_id)
        return True

    @staticmethod
    def _claimed_values() -> dict:
        return {"status": "running", "started_at": utcnow(), "attempts": Prediction.attempts + 1}

    def upkeep(self) -> None:
        """A queue worker's sweep does what the housekeeping thread does embedded."""
        self.housekeeping()

    def start_background(self) -> None:
        """A queue worker that runs predictions delivers their webhooks too: on the pool's threads."""
        self.webhooks.start()

    def stop_background(self) -> None:
        self.webhooks.stop()

    # --- one prediction ----------------------------------------------------------

    def run(self, row_id: str) -> None:
        with self.sessions() as session:
            row = session.get(Prediction, row_id)
            account_id, path, body, request_id, attempts = (row.account_id, row.path, row.input, row.request_id,
                                                            row.attempts)
        if attempts > self.config.prediction_max_attempts:
            self._finish(row_id, 500, {"message": f"The process running this prediction stopped {attempts - 1} "
                                                  "times; it was not run again."}, 0.0)
            return
        done = threading.Event()
        threading.Thread(target=leases.keep_renewed, args=(self.sessions, Prediction, row_id, self.lease, done),
                         daemon=True).start()
        started = utcnow()
        try:
            status, answer = call_as(self.app, account_id, path, body, request_id or None, background=True)
        finally:
            done.set()
        self._finish(row_id, status, answer, (utcnow() - started).total_seconds())
        self.webhooks.wake()  # a webhook it marked pending is the pool's to call

    def _finish(self, row_id: str, status: int, answer, seconds: float) -> None:
        succeeded = status < 400
        values = {"completed_at": utcnow(), "predict_seconds": round(seconds, 4), "lease_until": None}
        with self.sessions() as session:
            row = session.get(Prediction, row_id)
            if row is None or row.status != "running":
                return  # deleted (retention) or cancelled meanwhile
            if row.cancel_requested:
                values["status"] = "cancelled"
            elif succeeded:
                values.update(status="succeeded", output=answer)
            else:
                values.update(status="failed", error=answer, error_status=status)
            if row.webhook:
                values.update(webhook_status="pending", webhook_next_at=utcnow())
            session.execute(update(Prediction).where(Prediction.id == row_id, Prediction.status == "running")
                            .values(**values))
            session.commit()

    # --- retention ----------------------------------------------------------------

    def housekeeping(self) -> None:
        """Delete predictions past their retention. (Webhooks due for a retry are
        the pool's: it looks for them itself.)"""
        kept = timedelta(seconds=self.config.prediction_retention_s)
        with self.sessions() as session:
            session.execute(delete(Prediction).where(Prediction.completed_at < utcnow() - kept))
            session.commit()
