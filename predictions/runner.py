"""Runs asynchronous predictions, delivers their webhooks, and deletes old ones.

A prediction is a row (app/db.py Prediction) holding the request as it was
sent. A runner claims it with a lease (app/leases.py), replays the request
through the whole app as its account (predictions/dispatch.py: the same
schemas, limits, batcher and errors as the synchronous call), and records the
answer. A process that dies mid-prediction stops renewing its lease and the
prediction runs again elsewhere, up to INFER_PREDICTION_MAX_ATTEMPTS starts
(a prediction has no side effects, so running it again is safe).

Embedded, every web process runs INFER_PREDICTION_THREADS of them; with a
queue, the workers do (app/work.py).
"""

import json
import logging
import threading
from datetime import timedelta

from sqlalchemy import and_, delete, or_, select, update

from app import leases
from app.db import Account, Prediction, utcnow
from . import webhooks
from .dispatch import call_as
from .objects import prediction_object

log = logging.getLogger(__name__)


def _due(now):
    """Waiting, or claimed by a process that stopped renewing its lease."""
    return or_(Prediction.status == "queued",
               and_(Prediction.status == "running", Prediction.lease_until < now))


class PredictionRunner:
    kind = "predict"

    def __init__(self, app, config: dict, sessions):
        self.app = app
        self.config = config
        self.sessions = sessions
        self.lease = timedelta(seconds=float(config["PREDICTION_LEASE_S"]))
        self.networks = webhooks.allowed_networks(config["WEBHOOK_ALLOWED_NETWORKS"])
        self._wake = threading.Condition()
        self._pending_wakes = 0
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- the loops (embedded) ----------------------------------------------------

    def start(self) -> None:
        # One thread polls the database (predictions queued through another
        # process); the others sleep until woken, so an idle process asks once
        # per poll, not once per thread.
        for number in range(int(self.config["PREDICTION_THREADS"])):
            self._threads.append(threading.Thread(target=self._loop, args=(number == 0,), name=f"predictions-{number}",
                                                  daemon=True))
        self._threads.append(threading.Thread(target=self._housekeeping_loop, name="predictions-housekeeping",
                                              daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Take no new prediction; those running finish (their answers are short)."""
        self._stopped.set()
        with self._wake:
            self._wake.notify_all()

    def wake(self) -> None:
        with self._wake:
            self._pending_wakes += 1
            self._wake.notify()

    def _sleep(self, polls: bool) -> None:
        with self._wake:
            if self._pending_wakes == 0:
                self._wake.wait(float(self.config["PREDICTION_POLL_S"]) * (1 if polls else 60))
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
        while not self._stopped.wait(float(self.config["PREDICTION_POLL_S"])):
            try:
                self.housekeeping()
            except Exception:
                log.exception("prediction housekeeping")

    # --- the runner interface (app/work.py) --------------------------------------

    def due(self, now=None) -> list[str]:
        return leases.due_ids(self.sessions, Prediction, _due, Prediction.seq, now)

    def claim(self) -> str | None:
        """Take the oldest due prediction."""
        return leases.claim(self.sessions, Prediction, _due, self.lease, Prediction.seq, **self._claimed_values())

    def run_claimed(self, row_id: str) -> bool:
        """Run this prediction if it is still due; False if it was not (a queue's message delivered twice)."""
        if not leases.claim_row(self.sessions, Prediction, row_id, _due, self.lease, **self._claimed_values()):
            return False
        self.run(row_id)
        return True

    @staticmethod
    def _claimed_values() -> dict:
        return {"status": "running", "started_at": utcnow(), "attempts": Prediction.attempts + 1}

    def upkeep(self) -> None:
        """A queue worker's sweep does what the housekeeping thread does embedded."""
        self.housekeeping()

    # --- one prediction ----------------------------------------------------------

    def run(self, row_id: str) -> None:
        with self.sessions() as session:
            row = session.get(Prediction, row_id)
            account_id, path, body, request_id, attempts = (row.account_id, row.path, row.input, row.request_id,
                                                            row.attempts)
        if attempts > int(self.config["PREDICTION_MAX_ATTEMPTS"]):
            self._finish(row_id, 500, {"message": f"The process running this prediction stopped {attempts - 1} "
                                                  "times; it was not run again."}, 0.0)
            return
        done = threading.Event()
        threading.Thread(target=leases.keep_renewed, args=(self.sessions, Prediction, row_id, self.lease, done),
                         daemon=True).start()
        started = utcnow()
        try:
            status, answer = call_as(self.app, account_id, path, body, request_id or None)
        finally:
            done.set()
        self._finish(row_id, status, answer, (utcnow() - started).total_seconds())
        self.deliver_webhook(row_id)

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

    # --- webhooks and retention --------------------------------------------------

    def housekeeping(self) -> None:
        """Delete predictions past their retention; retry the webhooks that are due."""
        now = utcnow()
        kept = timedelta(seconds=float(self.config["PREDICTION_RETENTION_S"]))
        with self.sessions() as session:
            session.execute(delete(Prediction).where(Prediction.completed_at < now - kept))
            session.commit()
            due = session.scalars(select(Prediction.id).where(
                Prediction.webhook_status == "pending", Prediction.webhook_next_at <= now).limit(100)).all()
        for row_id in due:
            self.deliver_webhook(row_id)

    def deliver_webhook(self, row_id: str) -> None:
        """Call the prediction's webhook once, if it is due; schedule a retry or give up."""
        timeout = float(self.config["WEBHOOK_TIMEOUT_S"])
        now = utcnow()
        with self.sessions() as session:
            # Claimed for the length of one call, so two processes never send it together.
            claimed = session.execute(update(Prediction).where(
                Prediction.id == row_id, Prediction.webhook_status == "pending", Prediction.webhook_next_at <= now,
            ).values(webhook_next_at=now + timedelta(seconds=2 * timeout + 5)))
            session.commit()
            if claimed.rowcount != 1:
                return
            row = session.get(Prediction, row_id)
            secret = account_webhook_secret(session, row.account_id)
            body = json.dumps(prediction_object(row), separators=(",", ":")).encode()
            url, attempt = row.webhook, row.webhook_attempts + 1
        final = False
        try:
            status = webhooks.deliver(url, body, secret, self.networks, timeout, f"{row_id}.{attempt}")
            error = "" if 200 <= status < 300 else f"the webhook answered HTTP {status}"
        except webhooks.WebhookRefused as exc:
            error, final = f"refused: {exc}", True
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        values = {"webhook_attempts": attempt, "webhook_error": error}
        if not error:
            values["webhook_status"] = "delivered"
        elif final or attempt >= int(self.config["WEBHOOK_MAX_ATTEMPTS"]):
            values["webhook_status"] = "failed"
            log.warning("webhook of prediction %s failed for good after %d calls: %s", row_id, attempt, error)
        else:
            wait = float(self.config["WEBHOOK_RETRY_S"]) * 2 ** (attempt - 1)
            values["webhook_next_at"] = utcnow() + timedelta(seconds=wait)
        with self.sessions() as session:
            session.execute(update(Prediction).where(Prediction.id == row_id).values(**values))
            session.commit()


def account_webhook_secret(session, account_id: int) -> str:
    """The account's webhook secret, made on first use (once, even when two
    processes ask at the same moment)."""
    secret = session.scalar(select(Account.webhook_secret).where(Account.id == account_id))
    if secret:
        return secret
    session.execute(update(Account).where(Account.id == account_id, Account.webhook_secret.is_(None))
                    .values(webhook_secret=webhooks.new_secret()))
    session.commit()
    return session.scalar(select(Account.webhook_secret).where(Account.id == account_id))

