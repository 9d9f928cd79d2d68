"""Background work claimed fairly between accounts, with a cap on what one
account runs at once: asynchronous predictions, builds, dataset parses and
training jobs.

Each kind of work is a table of rows with a status and a lease (core/leases.py).
Claimed oldest first across all accounts, one account's backlog held back
everyone else's: six slow predictions of one account delayed another's by
30 s (issue 22). Here the next claim goes, among the accounts with due work,
to the account with the fewest rows of that kind running; among equals, to the
one this process served longest ago, so accounts take turns; oldest first
within an account. And no account runs more than its cap of a kind at once
(INFER_ACCOUNT_MAX_RUNNING_*).

"Running" is read from the database, the one record every process and replica
shares: rows claimed whose lease is live. A row whose process died (its lease
ran out) is due again and no longer counts. The cap holds under concurrent
claims because the count and the claim are one conditional statement:

    UPDATE <work> SET lease_until = ..., ... WHERE id = :row AND <due>
       AND (SELECT count(*) FROM <work> AS w WHERE <w is the account's> AND <w running>) < :cap

- SQLite runs a write statement under the database's write lock, taken before
  the statement reads anything, so two claims never interleave. (Python's
  sqlite3 opens the transaction just before the UPDATE: no earlier read of
  the same transaction holds an older snapshot.)
- PostgreSQL, in READ COMMITTED, gives each statement its own snapshot: two
  claims of one account could each count before the other commits. So each
  claim first takes pg_advisory_xact_lock(CLAIM_LOCK, account id): claims of
  one account take turns, and each counts what the one before it committed.
  Claims of different accounts do not wait for each other; the lock ends with
  the claim's transaction.
"""

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import aliased

from core.tables import utcnow

log = logging.getLogger(__name__)

# The first key of the advisory locks that serialise one account's claims on
# PostgreSQL (the second is the account id): an arbitrary constant, the same in
# every release and process.
CLAIM_LOCK = 0x1F3A_C1A1
# Rows of the chosen account tried in one claim before giving up on it (another
# process may take each first).
CANDIDATES = 3


def leased(status: str) -> Callable:
    """The `running` test of a kind whose claimed rows have this status."""
    return lambda rows, now: (rows.status == status) & (rows.lease_until >= now)


@dataclass(frozen=True)
class WorkKind:
    """One table of background work, as fair claiming sees it."""

    table: Any  # the ORM class: an id, a lease_until
    due: Callable  # now -> clause on `table`: waiting, or its lease ran out
    running: Callable  # (rows, now) -> clause on `rows` (the table or an alias): claimed, lease live
    oldest_first: Any  # the column that orders one account's rows, oldest first
    # rows -> (what to select from, its account id column): the table itself, or
    # joined to where its account is (a build's version reaches it through its model).
    account_of: Callable = field(default=lambda rows: (rows, rows.account_id))


def fairest_first(waiting: dict, running: dict, served: dict) -> list:
    """The accounts of `waiting` ({account: its oldest due row's order}), fewest
    running first; among equals the one served longest ago ({account: monotonic
    time}), then the one waiting longest."""
    return sorted(waiting, key=lambda account: (running.get(account, 0), served.get(account, float("-inf")),
                                                waiting[account]))


class FairClaims:
    """Claims of one kind of work for one runner: fair between accounts, capped per account."""

    def __init__(self, kind: WorkKind, lease: timedelta, cap: int):
        self.kind = kind
        self.lease = lease
        self.cap = max(1, int(cap))
        self._served: dict = {}  # account -> when this process last claimed for it (round-robin among equals)
        self._served_lock = threading.Lock()

    # --- what is due -------------------------------------------------------------

    def _waiting(self, session, now) -> dict:
        """{account: its oldest due row's order} of the accounts with due rows."""
        kind = self.kind
        source, account = kind.account_of(kind.table)
        return dict(session.execute(select(account, func.min(kind.oldest_first)).select_from(source)
                                    .where(kind.due(now)).group_by(account)).all())

    def _running(self, session, now) -> dict:
        """{account: rows of this kind it runs now, in every process}."""
        source, account = self.kind.account_of(self.kind.table)
        return dict(session.execute(select(account, func.count()).select_from(source)
                                    .where(self.kind.running(self.kind.table, now)).group_by(account)).all())

    def _due_of(self, session, account, now, limit: int) -> list:
        kind = self.kind
        source, account_column = kind.account_of(kind.table)
        return list(session.scalars(select(kind.table.id).select_from(source)
                                    .where(account_column == account, kind.due(now))
                                    .order_by(kind.oldest_first).limit(limit)).all())

    def due_ids(self, sessions, now=None) -> list:
        """The rows that could be claimed now, fairest account first: each
        account's oldest, as many as it has room under its cap. (A queue sends a
        message for these; a capped account's other rows wait for room.)"""
        now = now or utcnow()
        with sessions() as session:
            waiting = self._waiting(session, now)
            running = self._running(session, now)
            ids = []
            for account in fairest_first(waiting, running, self._served_snapshot()):
                room = self.cap - running.get(account, 0)
                if room > 0:
                    ids.extend(self._due_of(session, account, now, room))
            return ids

    # --- claiming ----------------------------------------------------------------

    def claim(self, sessions, **values):
        """The id of the next due row, fairly between accounts, now leased to this
        process with `values` set; None when nothing due may run (none is due,
        or every account with due rows is at its cap)."""
        now = utcnow()
        with sessions() as session:
            waiting = self._waiting(session, now)
            if not waiting:
                return None
            running = self._running(session, now)
            session.commit()  # ends the read transaction (PostgreSQL) before the claims
            for account in fairest_first(waiting, running, self._served_snapshot()):
                if running.get(account, 0) >= self.cap:
                    continue
                for row_id in self._due_of(session, account, now, CANDIDATES):
                    if self._claim_row(session, account, row_id, now, values):
                        return row_id
        return None

    def claim_row(self, sessions, row_id, **values) -> bool:
        """Lease this one row if it is still due and its account is under its cap
        (a queue's message named it; one delivered twice claims nothing)."""
        now = utcnow()
        kind = self.kind
        source, account_column = kind.account_of(kind.table)
        with sessions() as session:
            account = session.scalar(select(account_column).select_from(source).where(kind.table.id == row_id))
            if account is None:
                return False
            return self._claim_row(session, account, row_id, now, values)

    def _claim_row(self, session, account, row_id, now, values: dict) -> bool:
        """One conditional UPDATE: the row, if still due and its account under the
        cap (see the module's docstring for why this holds across processes)."""
        table = self.kind.table
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key, :account)"),
                            {"key": CLAIM_LOCK, "account": int(account)})
        claimed = session.execute(update(table).where(table.id == row_id, self.kind.due(now),
                                                      self._running_count(account, now) < self.cap)
                                  .values(lease_until=now + self.lease, **values)
                                  .execution_options(synchronize_session=False))
        session.commit()
        if claimed.rowcount != 1:
            return False
        with self._served_lock:
            self._served[account] = time.monotonic()
        log.info("claimed %s %s", table.__tablename__, row_id)
        return True

    def _running_count(self, account, now):
        """The account's running rows, counted in a subquery over an alias of the
        table (not correlated with the row being updated)."""
        rows = aliased(self.kind.table)
        source, account_column = self.kind.account_of(rows)
        return (select(func.count()).select_from(source)
                .where(account_column == account, self.kind.running(rows, now)).scalar_subquery())

    def _served_snapshot(self) -> dict:
        with self._served_lock:
            return dict(self._served)
