"""The webhook pool: delivers the webhooks of finished predictions on threads of
its own (INFER_WEBHOOK_THREADS), never on a prediction's thread nor the
housekeeping thread.

A webhook endpoint that answered one byte every few seconds held the
prediction thread that called it (and its retry the housekeeping thread)
almost without limit, and another account's prediction stayed queued (issue
22). Now a finished prediction only marks its webhook pending
(predictions/runner.py) and wakes the pool. A pool thread claims a due
delivery in the database, with a conditional UPDATE that moves its
webhook_next_at past the longest a call may take, so two processes never send
one together (a process that dies mid-call leaves it due again after that);
calls it once, within INFER_WEBHOOK_RESOLVE_TIMEOUT_S for the lookup and
INFER_WEBHOOK_TIMEOUT_S for the whole call; and records the outcome:
delivered, a retry after a back-off, or failed for good.

A slow endpoint costs one pool thread for at most that long, but one
account's many slow endpoints could still fill the pool: the next delivery
goes to the account with the fewest deliveries in flight in this process (then
the one served longest ago), and one account has at most
INFER_WEBHOOK_ACCOUNT_THREADS in flight per process.
"""

import json
import logging
import threading
from datetime import timedelta

from sqlalchemy import func, select, update

from core.fair_claims import fairest_first
from core.settings import Settings
from core.tables import Account, Prediction, utcnow

from . import webhooks
from .objects import prediction_object

log = logging.getLogger(__name__)

# Seconds a claimed delivery stays claimed beyond the longest a call may take.
CLAIM_MARGIN_S = 5.0
# Due deliveries of the chosen account tried in one claim (another process may take each first).
CANDIDATES = 3


class WebhookPool:
    """Delivers the webhooks of a table whose rows carry an account_id and the
    webhook columns of a prediction (webhook, webhook_status, webhook_attempts,
    webhook_next_at, webhook_error): the predictions' here, the other events'
    in predictions/event_webhooks.py."""

    table = Prediction
    what = "prediction"  # in the log's lines

    def __init__(self, config: Settings, sessions, networks: list, resolver: webhooks.Resolver):
        self.config = config
        self.sessions = sessions
        self.networks = networks
        self.resolver = resolver
        self.timeout_s = config.webhook_timeout_s
        self.account_threads = max(1, config.webhook_account_threads)
        # The lookup (a wait for a slot and the lookup, within the resolve timeout) and the call.
        self.claimed_for = timedelta(seconds=resolver.timeout_s + self.timeout_s + CLAIM_MARGIN_S)
        self._in_flight: dict = {}  # account -> deliveries this process makes now
        self._served: dict = {}  # account -> when this process last claimed one of its deliveries
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._pending_wakes = 0
        self._stopped = threading.Event()
        self.threads: list[threading.Thread] = []

    # --- the threads ---------------------------------------------------------------

    def start(self) -> None:
        # As the prediction threads: one polls the database (deliveries due for a
        # retry, or finished in another process); the others sleep until woken.
        self._stopped = stopped = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(number == 0, stopped), name=f"webhooks-{number}",
                                         daemon=True) for number in range(max(1, self.config.webhook_threads))]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Take no new delivery; those in flight end by their deadline."""
        self._stopped.set()
        with self._wake:
            self._wake.notify_all()

    def wake(self) -> None:
        with self._wake:
            self._pending_wakes += 1
            self._wake.notify()

    def _loop(self, polls: bool, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                while not stopped.is_set() and self.deliver_one():
                    pass
            except Exception:  # the loop must survive anything the database throws
                log.exception("webhook pool")
            with self._wake:
                if self._pending_wakes == 0 and not stopped.is_set():
                    self._wake.wait(self.config.prediction_poll_s * (1 if polls else 60))
                self._pending_wakes = max(0, self._pending_wakes - 1)

    # --- one delivery --------------------------------------------------------------

    def deliver_one(self) -> bool:
        """Claim one due delivery and make it; False when none may be made now."""
        claimed = self._claim()
        if claimed is None:
            return False
        row_id, account = claimed
        self.wake()  # there may be more: another thread looks while this one calls
        try:
            self._deliver(row_id)
        finally:
            with self._lock:
                self._in_flight[account] -= 1
        return True

    def _claim(self) -> tuple | None:
        now = utcnow()
        with self.sessions() as session:
            rows = self.table
            waiting = dict(session.execute(select(rows.account_id, func.min(rows.webhook_next_at))
                                           .where(self._due(now)).group_by(rows.account_id)).all())
            session.commit()
            with self._lock:
                order = fairest_first(waiting, self._in_flight, self._served)
            for account in order:
                if not self._reserve(account):
                    continue
                row_id = self._claim_of(session, account, now)
                if row_id is not None:
                    return row_id, account
                with self._lock:
                    self._in_flight[account] -= 1
        return None

    def _due(self, now):
        return (self.table.webhook_status == "pending") & (self.table.webhook_next_at <= now)

    def _reserve(self, account) -> bool:
        """A place for one more delivery of this account in this process, if it has room."""
        with self._lock:
            if self._in_flight.get(account, 0) >= self.account_threads:
                return False
            self._in_flight[account] = self._in_flight.get(account, 0) + 1
            return True

    def _claim_of(self, session, account, now) -> str | None:
        rows = self.table
        candidates = session.scalars(select(rows.id).where(rows.account_id == account, self._due(now))
                                     .order_by(rows.webhook_next_at).limit(CANDIDATES)).all()
        for row_id in candidates:
            claimed = session.execute(update(rows).where(rows.id == row_id, self._due(now))
                                      .values(webhook_next_at=now + self.claimed_for))
            session.commit()
            if claimed.rowcount == 1:
                with self._lock:
                    self._served[account] = now.timestamp()
                return row_id
        return None

    def _deliver(self, row_id: str) -> None:
        """Call the webhook once; record the outcome and schedule a retry or give up."""
        with self.sessions() as session:
            row = session.get(self.table, row_id)
            if row is None:
                return  # deleted meanwhile (retention)
            secret = account_webhook_secret(session, row.account_id)
            body = json.dumps(self.body_of(session, row), separators=(",", ":")).encode()
            url, attempt, headers = row.webhook, row.webhook_attempts + 1, self.headers_of(row)
        final = False
        try:
            status = webhooks.deliver(url, body, secret, self.networks, self.resolver, self.timeout_s,
                                      f"{row_id}.{attempt}", headers)
            error = "" if 200 <= status < 300 else f"the webhook answered HTTP {status}"
        except webhooks.WebhookRefused as exc:
            error, final = f"refused: {exc}", exc.final
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
        values = {"webhook_attempts": attempt, "webhook_error": error}
        if not error:
            values["webhook_status"] = "delivered"
        elif final or attempt >= self.config.webhook_max_attempts:
            values["webhook_status"] = "failed"
            log.warning("webhook of %s %s failed for good after %d calls: %s", self.what, row_id, attempt, error)
        else:
            wait = self.config.webhook_retry_s * 2 ** (attempt - 1)
            values["webhook_next_at"] = utcnow() + timedelta(seconds=wait)
        with self.sessions() as session:
            session.execute(update(self.table).where(self.table.id == row_id).values(**values))
            session.commit()
        if "webhook_next_at" in values:
            log.info("webhook of %s %s: call %d failed (%s); retried in %g s", self.what, row_id, attempt, error,
                     self.config.webhook_retry_s * 2 ** (attempt - 1))

    # --- what a table's webhooks carry ------------------------------------------------

    def body_of(self, session, row) -> dict:
        """The JSON body of a row's call."""
        return prediction_object(row)

    def headers_of(self, row) -> dict:
        """Headers a row's call carries besides the signature's."""
        return {}


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
