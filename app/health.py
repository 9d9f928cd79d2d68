"""Liveness, readiness and metrics: no API key needed (probes and scrapers have none).

What each means to Kubernetes (docs/operations/kubernetes.md): /healthz is
liveness, so it checks nothing outside the process (a database outage must not
get every pod restarted); /readyz is readiness: 503 while the models preload,
from SIGTERM on (app/drain.py), when a preloaded model failed, and when the
database has been unreachable longer than INFER_READY_DB_GRACE_S
(app/database_watch.py). Under gunicorn no worker answers before its preload is
done, so a startup probe on /healthz waits for the preload.
"""

import os

from flask import Blueprint, current_app, jsonify

from app.database_watch import DatabaseWatch
from app.drain import draining, server_folder
from web.metrics import metrics_response
from web.settings import current_settings
from web.work_metrics import WorkCollector, sample_batch_queues

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    """Alive: the process answers (nothing outside it is checked)."""
    return jsonify(status="ok")


@health.get("/readyz")
def readyz():
    """Ready: not draining, the database answers (or has not been away long) and the preload list is loaded."""
    checks = {}
    ready = True
    if draining(server_folder()):
        checks["draining"] = "stopping: SIGTERM received, requests in progress finish"
        ready = False
    ready_db, checks["database"] = _database_watch().check()
    ready = ready and ready_db
    registry = current_app.extensions["models"]
    if not registry.preload_done.is_set():
        checks["models"] = "preloading"
        ready = False
    elif registry.preload_errors:
        checks["models"] = {entry: error for entry, error in registry.preload_errors.items()}
        ready = False
    else:
        checks["models"] = "ok"
    checks["loaded_models"] = registry.cache.loaded()
    # Which isolation uploaded code gets, and what bounds its resources (a
    # control group, or the fallback without one); a missing sandbox does not
    # make the service unready (built-in tasks work), it makes user-code builds fail.
    checks["user_code_isolation"] = current_app.extensions["sandbox"].describe()
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503


def _database_watch() -> DatabaseWatch:
    watch = current_app.extensions.get("database_watch")
    if watch is None:  # two first probes at once make two: harmless, one is kept
        watch = current_app.extensions["database_watch"] = DatabaseWatch(
            current_app.extensions["db"].ping, current_settings().ready_db_grace_s)
    return watch


@health.get("/metrics")
def metrics():
    """Prometheus text format: this server's samples, and the background work's, computed now."""
    collector = current_app.extensions.get("work_metrics")
    if collector is None:
        collector = current_app.extensions["work_metrics"] = WorkCollector(
            current_app.extensions["work"], current_app.extensions["db"].sessions,
            current_settings().work_metrics_max_age_s)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # one process: its batch queues, exactly now
        sample_batch_queues(current_app.extensions["models"])
    return metrics_response([collector])
