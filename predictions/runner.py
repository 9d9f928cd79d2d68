"""Runs asynchronous predictions, hands their webhooks to the webhook pool, and deletes old ones.

A prediction is a row (core/tables.py Prediction) holding the request as it was
sent. A runner claims it with a lease (core/leases.py), runs the request's
route as its account (api/prediction_dispatch.py: the same schemas, limits,
batcher and errors as the synchronous call), and records the answer. A process that dies mid-prediction stops renewing its lease and the
prediction runs again elsewhere, up to INFER_PREDICTION_MAX_ATTEMPTS starts
(a prediction has no side effects, so running it again is safe).

Predictions are claimed fairly between accounts (core/fair_claims.py): the
next goes to the account with the fewest running, and one account runs at most
INFER_ACCOUNT_MAX_RUNNING_PREDICTIONS at once, across every process.

Embedded, every web process runs INFER_PREDICTION_THREADS of them at once (the
loop, lease and hand-back are core/runner.py's); with a queue, the workers do
(core/work.py). Webhooks are delivered by the pool
(predictions/webhook_pool.py) where the predictions run, and so are those of
training jobs, builds, batches and evaluations (predictions/event_webhooks.py).
"""

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import and_, delete, or_, update

from core.fair_claims import FairClaims, WorkKind, leased
from core.runner import Runner
from core.settings import Settings
from core.tables import Prediction, utcnow

from . import webhooks
from .event_webhooks import EventWebhookPool, PayloadOf
from .webhook_pool import WebhookPool

log = logging.getLogger(__name__)


def _due(now):
    """Waiting, or claimed by a process that stopped renewing its lease."""
    return or_(Prediction.status == "queued",
               and_(Prediction.status == "running", Prediction.lease_until < now))


PREDICTIONS = WorkKind(Prediction, due=_due, running=leased("running"), oldest_first=Prediction.seq)


# (account id, path, body, request id, abandon=) -> (status, JSON answer): runs a
# stored request's route as its account (the app passes api/prediction_dispatch.py's).
# While the request waits for room in its account's rate limits, abandon() is asked
# now and then; True ends the wait with WaitAbandoned, the request not run.
RunRequest = Callable[..., tuple[int, dict]]


class WaitAbandoned(Exception):
    """A request gave up waiting for room in its account's rate limits: the run it
    belongs to was cancelled, or this process is stopping. It was not run."""


class PredictionRunner(Runner):
    """Asynchronous predictions, one kind of background work (core/runner.py)."""

    kind, queue, table = "predict", "predictions", Prediction
    cut_short = False  # a prediction is short: a queue worker that stops lets it finish
    upkeep_apart = True  # retention runs while every slot is busy

    def __init__(self, run_request: RunRequest, config: Settings, sessions, payload_of: PayloadOf | None = None):
        lease = timedelta(seconds=config.prediction_lease_s)
        super().__init__(sessions, FairClaims(PREDICTIONS, lease, config.account_max_running_predictions),
                         lease, poll_s=config.prediction_poll_s, slots=config.prediction_threads)
        self.run_request = run_request
        self.config = config
        self.networks = webhooks.allowed_networks(config.webhook_allowed_networks)
        # Lookups of the pool's calls and of requests checking a new webhook.
        self.resolver = webhooks.Resolver(2 * config.webhook_threads,
                                          config.webhook_resolve_timeout_s)
        self.webhooks = WebhookPool(config, sessions, self.networks, self.resolver)
        self.event_webhooks = EventWebhookPool(config, sessions, self.networks, self.resolver, payload_of)

    # --- what is its own of the runner shape ------------------------------------------

    def start(self) -> None:
        super().start()
        self.start_background()

    def stop_runs(self) -> None:
        """Those running finish (their answers are short); the webhook pools stop."""
        self.stop_background()

    def claimed_values(self) -> dict:
        return {"status": "running", "started_at": utcnow(), "attempts": Prediction.attempts + 1}

    def upkeep(self) -> None:
        self.housekeeping()

    def start_background(self) -> None:
        """A queue worker that runs predictions delivers their webhooks too (and the
        other events'): on the pools' threads."""
        self.webhooks.start()
        self.event_webhooks.start()

    def stop_background(self) -> None:
        self.webhooks.stop()
        self.event_webhooks.stop()

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
        started = utcnow()
        with self.renewing(row_id):
            status, answer = self.run_request(account_id, path, body, request_id or None)
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
        kept = timedelta(seconds=float(self.config.prediction_retention_s))
        with self.sessions() as session:
            session.execute(delete(Prediction).where(Prediction.completed_at < utcnow() - kept))
            session.commit()
        self.event_webhooks.housekeeping()
