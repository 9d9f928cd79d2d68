"""Jobs kept in the database and claimed with leases: builds (uploads/builder.py),
dataset parses (training/dataset_parses.py), training jobs (training/jobs.py),
asynchronous predictions (predictions/runner.py); the runner shape that holds
and hands back the leases is core/runner.py.

A process takes a row with one conditional UPDATE (core/fair_claims.py: fairly
between accounts, each capped), so two processes never both win it, and holds
it by renewing the row's lease_until while it works. A process that dies
stops renewing; once the lease has run out, the row is claimable again, by any
process.
"""

import logging
import threading
from datetime import timedelta

from sqlalchemy import update

from core.tables import utcnow
from core.webhook_events import notify

log = logging.getLogger(__name__)


def cancel(session, row, event: str, ended_column: str = "finished_at") -> None:
    """Cancel a queued row at once (and call its webhook: `event`), or ask a running
    one to stop, which its runner does when it next looks at cancel_requested.
    Conditional updates: a runner may claim or end the row between the caller's
    read and this write."""
    table = type(row)
    cancelled = session.execute(update(table).where(table.id == row.id, table.status == "queued").values(
        status="cancelled", cancel_requested=True, message="Cancelled before it started.",
        **{ended_column: utcnow()}))
    if cancelled.rowcount == 1:
        notify(session, row.account_id, event, row.id, row.webhook)
    else:
        session.execute(update(table).where(table.id == row.id, table.status == "running")
                        .values(cancel_requested=True))
    session.commit()
    session.refresh(row)


def renew(sessions, table, row_id, lease: timedelta) -> bool:
    """Extend the row's lease; False when the row is gone."""
    with sessions() as session:
        renewed = session.execute(update(table).where(table.id == row_id).values(lease_until=utcnow() + lease))
        session.commit()
        return renewed.rowcount == 1


def keep_renewed(sessions, table, row_id, lease: timedelta, done: threading.Event) -> None:
    """Renew the lease every third of its length until `done` (run it on a thread)."""
    while not done.wait(lease.total_seconds() / 3):
        try:
            renew(sessions, table, row_id, lease)
        except Exception:  # the database may be away for a moment; the next renewal may work
            log.exception("renewing the lease of %s %s", table.__tablename__, row_id)


def release(sessions, table, row_id) -> None:
    """End this process's lease now (it stops cleanly mid-work): the row is
    claimable again at once instead of after the lease runs out."""
    with sessions() as session:
        session.execute(update(table).where(table.id == row_id, table.lease_until.is_not(None))
                        .values(lease_until=utcnow()))
        session.commit()
