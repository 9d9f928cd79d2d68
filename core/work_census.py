"""What background work waits and runs now, per kind, for /metrics: computed
when scraped, from the database every process shares (so any replica's scrape
sees the whole service), and from the queue's lists in Redis when there is one.

Three aggregates per kind in one statement each (counts and a minimum over the
rows whose status is waiting or running, on indexed columns): a scrape costs a
few small queries, whatever the size of the history.
"""

from dataclasses import dataclass

from sqlalchemy import case, func, select

from core.tables import utcnow

RQ_QUEUE_KEY = "rq:queue:"  # RQ keeps each queue's job ids in the list rq:queue:<name>


@dataclass(frozen=True)
class KindCensus:
    kind: str  # build | parse | train | predict | batch | evaluate (core/runner.py Runner.kind)
    queue: str  # its queue's name (core/runner.py Runner.queue)
    waiting: int  # due: waiting for a slot, or its lease ran out (its process died)
    running: int  # claimed, lease live, in any process
    oldest_waiting_s: float  # age of the oldest waiting row (since it was created); 0 when none waits


def census(runners, sessions, now=None) -> list[KindCensus]:
    """One KindCensus per runner (core/work.py's runners: {kind: Runner})."""
    now = now or utcnow()
    found = []
    with sessions() as session:
        for kind, runner in sorted(runners.items()):
            work = runner.claims.kind
            table = work.table
            due, running = work.due(now), work.running(table, now)
            waiting, runs, oldest = session.execute(select(
                func.count(case((due, 1))), func.count(case((running, 1))),
                func.min(case((due, table.created_at))),
            ).where(due | running)).one()
            found.append(KindCensus(kind, runner.queue, int(waiting), int(runs), _age_s(now, oldest)))
    return found


def _age_s(now, then) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:  # SQLite gives back naive datetimes (stored as UTC)
        then = then.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - then).total_seconds())


def queue_lengths(redis, names) -> dict[str, int]:
    """Messages waiting in each RQ queue (LLEN rq:queue:<name>): what KEDA reads too."""
    with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(RQ_QUEUE_KEY + name)
        return dict(zip(names, (int(length) for length in pipe.execute())))
