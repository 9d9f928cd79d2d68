"""The production server configuration (the one bench/ measures).

Settings come from INFER_* variables, read by core/settings.py as the app reads them;
see docs/operations/settings.md. gthread workers: requests
spend their time in torch, which releases the GIL, so threads overlap well.
"""

import os
import shutil
import sys
import tempfile

from core.settings import Settings

settings = Settings.from_environ()
bind = settings.bind
workers = settings.workers
# Requests mostly wait on the model's batcher, so threads are cheap, and a
# batch can only be as large as the requests a worker has accepted: with too
# few threads, concurrent clients queue in the socket instead of in a batch.
# Keep it above INFER_ACCOUNT_MAX_IN_FLIGHT (48): the threads beyond one
# account's limit are what every other account is served on during its flood.
threads = settings.threads
# gthread, with its thread pool shared round-robin between clients instead of
# first come first served (app/fair_worker.py).
worker_class = "app.fair_worker.FairThreadWorker"
# Loading a large model on first use can take a while; the worker must not be
# killed for it.
timeout = settings.worker_timeout
graceful_timeout = settings.graceful_timeout_s
keepalive = 5
accesslog = settings.access_log or None
errorlog = "-"

# Every worker writes its metrics here so /metrics can sum them (see web/metrics.py).
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"infer-metrics-{os.getpid()}")
)


# Each worker leaves a marker here once its models are loaded; the last one prints
# the "ready" line (app/ready_line.py). Inside the metrics dir (which /metrics reads
# only *.db files of), so that the next start clears what a killed one left. The
# drain's marker goes there too (app/drain.py server_folder() finds it).
_ready_dir = os.path.join(_metrics_dir, "ready")


def on_starting(server):
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    os.makedirs(_ready_dir)
    # Upgrade the schema and create the first API key once, in the master, before
    # any worker starts: workers racing to do it would print several keys.
    from app import prepare_database
    from core.schema import SchemaError

    try:
        prepare_database()
    except SchemaError as exc:  # a database this release must not run on: say why, no traceback
        server.log.error("%s", exc)
        sys.exit(1)


def when_ready(server):
    # SIGTERM drains first (app/drain.py): gunicorn's own handler stops taking
    # connections at once. The arbiter looks its handlers up on itself, so this
    # instance's is replaced.
    server.handle_term = _draining_term(server)


def _draining_term(server):
    import signal
    import threading

    from app.drain import mark_draining

    draining = []

    def handle_term():
        if draining:  # the drain is over, or a second SIGTERM cuts it short
            raise StopIteration
        draining.append(True)
        mark_draining(_ready_dir)  # every worker's /readyz answers 503 from now on
        if settings.drain_s <= 0:
            raise StopIteration
        server.log.info("draining for %g s (INFER_DRAIN_S): /readyz answers 503, requests are still served",
                        settings.drain_s)
        # The arbiter's loop runs signals it queued; this one ends the drain.
        timer = threading.Timer(settings.drain_s, server.signal, args=(signal.SIGTERM, None))
        timer.daemon = True
        timer.start()

    return handle_term


def post_worker_init(worker):
    app = worker.wsgi
    from app.preload import wait_until_loaded
    from web.settings import settings_of

    # A worker accepts no request before its preloaded models are in: the
    # first request after start must not be the one that pays for a load.
    wait_until_loaded(app.extensions["models"], worker.notify, lambda: worker.alive)
    if not worker.alive:
        return
    app_settings = settings_of(app)  # the app's: a queue turns its loops off
    if app_settings.builder:
        app.extensions["builder"].start()
    if app_settings.trainer:
        app.extensions["dataset_parses"].start()
        app.extensions["training"].start()
    if app_settings.predictions:
        app.extensions["predictions"].start()
        app.extensions["batches"].start()
        app.extensions["evaluations"].start()
    from web.work_metrics import start_sampling_batch_queues

    start_sampling_batch_queues(app.extensions["models"])  # /metrics' infer_batch_queue_length
    if app.extensions["work"].queued:
        from core.work import start_unloading_stale

        start_unloading_stale(app)
    _announce_ready(worker, app)


def _announce_ready(worker, app):
    from app.preload import loaded_summary, preload_entries
    from app.ready_line import ready_text, worker_ready
    from web.settings import settings_of

    registry = app.extensions["models"]
    models = loaded_summary(registry, preload_entries(settings_of(app).preload_models))
    worker.log.info("worker %s accepts requests (models loaded: %s)", worker.pid, models)
    if worker_ready(_ready_dir, worker.pid, worker.cfg.workers):
        print(ready_text(worker.cfg.bind[0], worker.cfg.workers, models, registry.preload_errors), flush=True)


def worker_exit(server, worker):
    # A worker that stops (restart, shutdown) hands its training jobs back
    # queued, so another worker resumes them at once from their checkpoints.
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions") and "training" in app.extensions:
        app.extensions["dataset_parses"].stop()
        app.extensions["training"].stop()
        app.extensions["predictions"].stop()
        app.extensions["batches"].stop()  # after the lines in flight: another worker resumes it
        app.extensions["evaluations"].stop()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    from app.ready_line import worker_gone

    multiprocess.mark_process_dead(worker.pid)
    worker_gone(_ready_dir, worker.pid)


def on_exit(server):
    shutil.rmtree(_ready_dir, ignore_errors=True)
