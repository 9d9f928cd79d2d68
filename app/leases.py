"""Jobs kept in the database and claimed with leases: builds (uploads/builder.py),
dataset parses and training jobs (training/jobs.py).

A process takes a row with one conditional UPDATE, so two processes never both
win it, and holds it by renewing the row's lease_until while it works. A
process that dies stops renewing; once the lease has run out, the row is
claimable again, by any process.
"""

import logging
import threading
from datetime import timedelta

from sqlalchemy import select, update

from .db import utcnow

log = logging.getLogger(__name__)


def claim(sessions, table, claimable, lease: timedelta, order_by, **values):
    """The id of one row that `claimable(now)` selects (waiting, or its worker's
    lease ran out), now leased to this process with `values` set; None if none."""
    now = utcnow()
    with sessions() as session:
        candidates = session.scalars(select(table.id).where(claimable(now)).order_by(order_by).limit(5)).all()
        for row_id in candidates:
            claimed = session.execute(update(table).where(table.id == row_id, claimable(now))
                                      .values(lease_until=now + lease, **values))
            session.commit()
            if claimed.rowcount == 1:
                return row_id
    return None


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


def claim_row(sessions, table, row_id, claimable, lease: timedelta, **values) -> bool:
    """Lease this one row if `claimable(now)` still selects it (a queue names the
    row; a message delivered twice, or for work already done, claims nothing)."""
    now = utcnow()
    with sessions() as session:
        claimed = session.execute(update(table).where(table.id == row_id, claimable(now))
                                  .values(lease_until=now + lease, **values))
        session.commit()
    if claimed.rowcount == 1:
        log.info("claimed %s %s", table.__tablename__, row_id)
        return True
    return False


def due_ids(sessions, table, claimable, order_by, now=None, limit: int = 1000) -> list:
    """The ids of the rows `claimable(now)` selects, oldest first."""
    with sessions() as session:
        return list(session.scalars(select(table.id).where(claimable(now or utcnow())).order_by(order_by)
                                    .limit(limit)).all())


def release(sessions, table, row_id) -> None:
    """End this process's lease now (it stops cleanly mid-work): the row is
    claimable again at once instead of after the lease runs out."""
    with sessions() as session:
        session.execute(update(table).where(table.id == row_id, table.lease_until.is_not(None))
                        .values(lease_until=utcnow()))
        session.commit()
