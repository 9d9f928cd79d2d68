"""Per-account usage: an account's inference requests per task and model, their
errors and latency, in time buckets (GET /usage, the web UI's Usage page).

The Prometheus metrics (web/metrics.py) stay as they are: they describe the
server; these rows describe an account, and are hooked at the same point (after
the request, timed from metrics' start of the request: web/usage.py).

What counts: a POST to a task route (the Backprop tasks, /custom, /predict) or to
/v1/embeddings, /v1/completions or /v1/chat/completions by an account, whatever
it answers: a refused request (4xx: a bad body, an unknown model, too many
requests) or a failed one (5xx) counts, and as an error too. A request without a
valid key belongs to no account and is not counted. A request sent with
`Prefer: respond-async` counts when its prediction runs (the runner replays it
through the app as its account), not when it is queued; a prediction URL's call
counts for the URL's owner the same way (api/prediction_urls.py replays it as
the owner). The model is the one the request names, or the task's default name.
Latency runs from the request's arrival to its answer; for a streamed answer
(/v1 with "stream": true), to its last event.

Nothing touches the database per request: a request adds to this process's
counts in memory, and a daemon thread adds them to the rows every
INFER_USAGE_FLUSH_S with an upsert that adds (ON CONFLICT DO UPDATE SET
requests = requests + excluded.requests), so gunicorn workers, queue workers and
replicas on one database add up instead of overwriting each other. GET /usage
first flushes the process that answers it; another process's counts show up
within INFER_USAGE_FLUSH_S. A process that exits flushes what it holds (atexit).
"""

import atexit
import logging
import os
import threading
import time
import weakref

from sqlalchemy import and_, case, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .tables import UsageBucket

log = logging.getLogger(__name__)

MODEL_NAME_MAX = 200  # UsageBucket.model's width
# Distinct model names one process keeps apart per account, task and bucket; the
# rest count as OTHER_MODELS. A client can name any model (a 404 is still counted),
# so without a bound it could add a row per request to its account's usage.
MODELS_PER_BUCKET = 50
OTHER_MODELS = "(other models)"
PRUNE_EVERY_S = 600.0  # how often a process deletes the buckets past retention

# (account id, bucket start, task, model) -> [requests, errors, latency ms total, latency ms max]
Key = tuple[int, int, str, str]

_RECORDERS: "weakref.WeakSet[UsageRecorder]" = weakref.WeakSet()


class UsageRecorder:
    """One process's counts, waiting to be added to the database."""

    def __init__(self, sessions, bucket_s: int, retention_hours: float, flush_s: float):
        self.sessions = sessions
        self.bucket_s = max(1, int(bucket_s))
        self.retention_s = float(retention_hours) * 3600
        self.flush_s = max(0.01, float(flush_s))
        self._pending: dict[Key, list] = {}
        self._lock = threading.Lock()  # guards _pending; held for a dict update only
        # One flush at a time: GET /usage waits for the one in progress instead of
        # reading the rows before that flush's counts are in.
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0
        # (account id, bucket start, task) -> the model names counted apart in it
        self._named: dict[tuple[int, int, str], set[str]] = {}
        _RECORDERS.add(self)

    def bucket_of(self, at: float, step: int | None = None) -> int:
        step = step or self.bucket_s
        return int(at // step) * step

    def record(self, account_id: int, task: str, model: str, status: int, latency_ms: float,
               at: float | None = None) -> None:
        bucket, model = self.bucket_of(time.time() if at is None else at), model[:MODEL_NAME_MAX]
        with self._lock:
            model = self._bounded(int(account_id), bucket, task, model)
            key = (int(account_id), bucket, task, model)
            self._add(key, 1, int(status >= 400), latency_ms, latency_ms)
            if self._thread is None:  # started on first use: an app that serves nothing runs no thread
                self._thread = threading.Thread(target=_flush_loop, args=(weakref.ref(self), self.flush_s),
                                                name="usage-flush", daemon=True)
                self._thread.start()

    def _bounded(self, account_id: int, bucket: int, task: str, model: str) -> str:
        """The model's name, or OTHER_MODELS past MODELS_PER_BUCKET names in this bucket."""
        named = self._named.get((account_id, bucket, task))
        if named is None:
            # A new bucket: the sets of buckets already over are no longer needed.
            for stale in [key for key in self._named if key[1] < bucket]:
                del self._named[stale]
            named = self._named[(account_id, bucket, task)] = set()
        if model in named:
            return model
        if len(named) >= MODELS_PER_BUCKET:
            return OTHER_MODELS
        named.add(model)
        return model

    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> int:
        """Add this process's counts to the database; the number of rows touched."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return 0
            try:
                with self.sessions() as session:
                    add_counts(session, pending)
                    session.commit()
            except BaseException:
                self._put_back(pending)  # the next flush tries again
                raise
        if time.time() - self._last_prune >= PRUNE_EVERY_S:
            try:
                self.prune()
            except Exception:  # the counts are stored; deleting old ones can wait for the next time
                log.warning("Could not delete the usage past INFER_USAGE_RETENTION_HOURS", exc_info=True)
        return len(pending)

    def _put_back(self, pending: dict) -> None:
        with self._lock:
            for key, counts in pending.items():
                self._add(key, *counts)

    def _add(self, key: Key, requests: int, errors: int, latency_total: float, latency_max: float) -> None:
        """Add counts to a key's pending ones (the caller holds _lock)."""
        counts = self._pending.setdefault(key, [0, 0, 0.0, 0.0])
        counts[0] += requests
        counts[1] += errors
        counts[2] += latency_total
        counts[3] = max(counts[3], latency_max)

    def prune(self, now: float | None = None) -> int:
        """Delete the buckets that ended before the retention window; how many."""
        now = time.time() if now is None else now
        self._last_prune = now
        cutoff = self.bucket_of(now - self.retention_s)  # the bucket holding the window's start stays
        with self.sessions() as session:
            deleted = session.execute(delete(UsageBucket).where(UsageBucket.bucket_start < cutoff)).rowcount
            session.commit()
        return deleted

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's counts are the parent's to flush, and its
        threads and held locks did not come along."""
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending = {}
        self._named = {}
        self._thread = None


def _flush_loop(recorder_ref, every_s: float) -> None:
    """Holds the recorder only while flushing: a recorder (an app) nobody uses any
    more is collected, and its thread ends."""
    while True:
        time.sleep(every_s)
        recorder = recorder_ref()
        if recorder is None:
            return
        try:
            recorder.flush()
        except Exception:
            log.warning("Could not store the usage counts; trying again in %ss", every_s, exc_info=True)
        del recorder


def add_counts(session, pending: dict) -> None:
    """Add counts to their rows, creating those that are missing, in one transaction.

    Rows go in key order, so two processes flushing the same rows lock them in
    the same order (PostgreSQL would otherwise find a deadlock)."""
    table = UsageBucket.__table__
    rows = [{"account_id": key[0], "bucket_start": key[1], "task": key[2], "model": key[3], "requests": counts[0],
             "errors": counts[1], "latency_ms_total": counts[2], "latency_ms_max": counts[3]}
            for key, counts in sorted(pending.items())]
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        statement = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.account_id, table.c.bucket_start, table.c.task, table.c.model],
            set_=_added(table.c, statement.excluded))
        session.execute(statement, rows)
    else:
        update_or_insert(session, rows)


def update_or_insert(session, rows: list[dict]) -> None:
    """Without an upsert (a database other than SQLite and PostgreSQL): add to each
    row, else insert it. Two processes inserting the same new row at once: one
    fails, and its flush is tried again whole (its transaction was rolled back)."""
    table = UsageBucket.__table__
    for row in rows:
        key = and_(*(table.c[name] == row[name] for name in ("account_id", "bucket_start", "task", "model")))
        if session.execute(update(table).where(key).values(_added(table.c, row))).rowcount == 0:
            session.execute(insert(table).values(row))


def _added(current, new) -> dict:
    """The SET clause that adds `new` (a row's values or the upsert's excluded row) to `current`."""
    new_max = new["latency_ms_max"]
    return {"requests": current.requests + new["requests"], "errors": current.errors + new["errors"],
            "latency_ms_total": current.latency_ms_total + new["latency_ms_total"],
            # Not GREATEST()/max(a, b): neither exists in both SQLite and PostgreSQL.
            "latency_ms_max": case((current.latency_ms_max < new_max, new_max), else_=current.latency_ms_max)}


# --- reading --------------------------------------------------------------------------

def account_usage(session, account_id: int, since: int, step: int) -> tuple[list[dict], list[dict]]:
    """(buckets of `step` seconds from `since` on, totals per task and model) of one account."""
    table = UsageBucket
    start = (table.bucket_start // step) * step
    sums = (func.sum(table.requests), func.sum(table.errors), func.sum(table.latency_ms_total),
            func.max(table.latency_ms_max))
    mine = and_(table.account_id == account_id, table.bucket_start >= since)
    buckets = session.execute(select(start.label("start"), table.task, table.model, *sums).where(mine)
                              .group_by(start, table.task, table.model).order_by(start, table.task, table.model))
    totals = session.execute(select(table.task, table.model, *sums).where(mine)
                             .group_by(table.task, table.model).order_by(table.task, table.model))
    return ([{"start": int(row[0]), **_figures(*row[1:])} for row in buckets],
            [_figures(*row) for row in totals])


def _figures(task, model, requests, errors, latency_total, latency_max) -> dict:
    requests = int(requests or 0)
    return {"task": task, "model": model, "requests": requests, "errors": int(errors or 0),
            "mean_latency_ms": round(float(latency_total or 0) / requests, 2) if requests else None,
            "max_latency_ms": round(float(latency_max or 0), 2)}


@atexit.register
def _flush_all_at_exit() -> None:
    for recorder in list(_RECORDERS):
        try:
            recorder.flush()
        except Exception:
            log.warning("Could not store the usage counts at exit", exc_info=True)


def _reset_all_after_fork() -> None:
    for recorder in list(_RECORDERS):
        recorder.reset_after_fork()


os.register_at_fork(after_in_child=_reset_all_after_fork)
