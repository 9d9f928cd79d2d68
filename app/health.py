"""Liveness, readiness and metrics: no API key needed (probes and scrapers have none)."""

from flask import Blueprint, current_app, jsonify

from web.metrics import metrics_response

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    """Alive: the process answers."""
    return jsonify(status="ok")


@health.get("/readyz")
def readyz():
    """Ready: the database answers and the preload list has been loaded."""
    checks = {}
    ready = True
    try:
        current_app.extensions["db"].ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        ready = False
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


@health.get("/metrics")
def metrics():
    """Prometheus text format."""
    return metrics_response()
