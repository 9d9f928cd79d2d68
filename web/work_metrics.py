"""Metrics of background work, the signals to scale workers and replicas on.

Gauges read when scraped (WorkCollector: from the database and the queue, so
every replica and worker reports the same, whole-service numbers, and gunicorn's
workers need not agree on anything): messages in each queue, work waiting and
running per kind, the oldest waiting row's age. Histograms observed when a run
ends (core/work_events.py): how long it took and, for a prediction, how long it
waited between submission and its start. And each model's batch queue, sampled
in every process (infer_batch_queue_length, summed across gunicorn's workers).
"""

import logging
import threading
import time

from prometheus_client import Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

from core import work_census

log = logging.getLogger(__name__)

WORK_SECONDS = Histogram(
    "infer_work_seconds",
    "Time one run of background work took in its process (build, parse, train, predict, batch, evaluate), by "
    "the row's status after it (queued: handed back by a stopping worker, to be resumed)",
    ["kind", "status"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
)
PREDICTION_LAG = Histogram(
    "infer_prediction_lag_seconds",
    "Time an asynchronous prediction waited between its submission and its (last) start, by its status after",
    ["status"],  # labelled, also because an unlabelled metric opens its file at import, before gunicorn's folder exists
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
BATCH_QUEUE = Gauge(
    "infer_batch_queue_length", "Requests waiting in a model's batch queue (summed over the server's workers)",
    ["model", "task"], multiprocess_mode="livesum",
)
# How often each process samples its batch queues under gunicorn: a scrape
# reads the last sample of every worker, not only the one it reached.
BATCH_QUEUE_SAMPLE_S = 1.0


def on_run_ended(runner, row_id, seconds: float) -> None:
    """core/work_events.py's listener: one query for the row's status (and a prediction's times)."""
    with runner.sessions() as session:
        row = session.get(runner.table, row_id)
        if row is None:  # deleted meanwhile
            return
        status = row.status
        WORK_SECONDS.labels(runner.kind, status).observe(seconds)
        created, started = getattr(row, "created_at", None), getattr(row, "started_at", None)
    if runner.kind == "predict" and created is not None and started is not None:
        PREDICTION_LAG.labels(status).observe(max(0.0, (started - created).total_seconds()))


class WorkCollector:
    """The gauges computed at scrape time (see the module's docstring), reused for
    `max_age_s` (INFER_WORK_METRICS_MAX_AGE_S): /metrics needs no key, and a flood
    of scrapes must not become a flood of queries."""

    def __init__(self, work, sessions, max_age_s: float, clock=time.monotonic):
        self.work = work  # app.extensions["work"]: EmbeddedWork or core/work_queue.py QueueWork
        self.sessions = sessions
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()  # concurrent scrapes wait for one round of queries
        self._last: tuple[float, list] | None = None

    def collect(self):
        with self._lock:
            now = self._clock()
            if self._last is None or now - self._last[0] >= self.max_age_s:
                self._last = (now, list(self._families()))
            return list(self._last[1])

    def _families(self):
        runners = dict(self.work.runners)
        try:
            kinds = work_census.census(runners, self.sessions)
        except Exception as exc:  # the database away: the other metrics still answer
            log.warning("work metrics: the database does not answer: %s", exc)
            kinds = []
        waiting = GaugeMetricFamily("infer_work_waiting", "Background work waiting for a worker, by kind", labels=["kind"])
        running = GaugeMetricFamily("infer_work_running", "Background work running now in any process, by kind",
                                    labels=["kind"])
        oldest = GaugeMetricFamily("infer_work_oldest_waiting_seconds",
                                   "Age of the oldest waiting row of each kind (0: none waits)", labels=["kind"])
        for kind in kinds:
            waiting.add_metric([kind.kind], kind.waiting)
            running.add_metric([kind.kind], kind.running)
            oldest.add_metric([kind.kind], kind.oldest_waiting_s)
        yield from (waiting, running, oldest)
        yield self._queue_depth(runners, kinds)

    def _queue_depth(self, runners, kinds):
        depth = GaugeMetricFamily(
            "infer_queue_depth",
            "Work waiting per queue: messages in the RQ list rq:queue:<name> with INFER_QUEUE_URL, else the "
            "database's waiting rows of the queue's kinds", labels=["queue"])
        if getattr(self.work, "queued", False):
            try:
                names = sorted({runner.queue for runner in runners.values()})
                for name, length in work_census.queue_lengths(self.work.redis, names).items():
                    depth.add_metric([name], length)
            except Exception as exc:
                log.warning("work metrics: the queue does not answer: %s", exc)
            return depth
        per_queue: dict = {}
        for kind in kinds:
            per_queue[kind.queue] = per_queue.get(kind.queue, 0) + kind.waiting
        for name, length in sorted(per_queue.items()):
            depth.add_metric([name], length)
        return depth


def sample_batch_queues(registry) -> None:
    """Set infer_batch_queue_length for this process's loaded models."""
    for key in registry.cache.loaded():
        served = registry.cache.peek(key)
        if served is None:
            continue
        for task, length in served.queue_lengths().items():
            BATCH_QUEUE.labels(key, task).set(length)


def start_sampling_batch_queues(registry) -> threading.Event:
    """In a gunicorn worker: sample every BATCH_QUEUE_SAMPLE_S until the event it returns is set."""
    stopped = threading.Event()

    def loop():
        while not stopped.wait(BATCH_QUEUE_SAMPLE_S):
            try:
                sample_batch_queues(registry)
            except Exception:
                log.exception("sampling batch queues")
                time.sleep(BATCH_QUEUE_SAMPLE_S)

    threading.Thread(target=loop, name="batch-queue-metrics", daemon=True).start()
    return stopped
