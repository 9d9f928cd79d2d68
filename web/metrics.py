"""Prometheus metrics: requests, latency, errors, model loads and loaded models.

Under gunicorn with several workers, PROMETHEUS_MULTIPROC_DIR (set by
gunicorn.conf.py) makes every worker write its samples to shared files, and
/metrics adds them up, so a scrape sees the whole server, not one worker.
"""

import os
import time

from flask import Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from core import work_events
from web.work_metrics import on_run_ended

REQUESTS = Counter("infer_requests_total", "HTTP requests", ["endpoint", "method", "status"])
ERRORS = Counter("infer_request_errors_total", "HTTP responses with status >= 400", ["endpoint", "status"])
LATENCY = Histogram(
    "infer_request_seconds",
    "Time to answer a request",
    ["endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
MODEL_LOADS = Counter("infer_model_loads_total", "Models loaded", ["model"])
MODEL_EVICTIONS = Counter("infer_model_evictions_total", "Models unloaded to fit the memory budget", ["model"])
MODEL_LOAD_SECONDS = Histogram(
    "infer_model_load_seconds", "Time to load a model", ["model"], buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
)
MODELS_LOADED = Gauge("infer_models_loaded", "Whether a model is loaded (per process)", ["model"], multiprocess_mode="livesum")
MODEL_BYTES = Gauge("infer_model_bytes", "Memory a loaded model takes (per process)", ["model"], multiprocess_mode="livesum")

BATCH_SIZE = Histogram(
    "infer_batch_size", "Items per forward pass", ["model", "task"], buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)


BATCH_SECONDS = Histogram(
    "infer_batch_seconds",
    "Time one forward pass takes",
    ["model", "task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


GENERATED_TOKENS = Counter(
    "infer_generated_tokens_total",
    "Tokens generated (the /v1 routes and /text-generation on the service's models), by why each choice ended: "
    "stop, length, cancelled (its client went away: the rest was not generated), "
    "deadline (INFER_REQUEST_TIMEOUT_S passed: stopped, the client got 504)",
    ["model", "finish_reason"],
)


def on_generation(model: str, finish_reason: str, tokens: int) -> None:
    GENERATED_TOKENS.labels(model, finish_reason).inc(tokens)


def on_generated_rows(model: str, rows: list[tuple[str, int]]) -> None:
    """(finish reason, tokens) of each row a generation produced, stopped or not."""
    for finish_reason, tokens in rows:
        on_generation(model, finish_reason, tokens)


def _child(metric, *labels):
    """metric.labels(*labels), looked up once per set of labels (each is a model, task,
    route, method or status: a few hundred at most): `labels` takes a lock and
    builds its key on every call, on every request."""
    key = (metric, labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*labels)
    return child


_CHILDREN: dict = {}


def on_batch(model: str, task: str, size: int, seconds: float) -> None:
    _child(BATCH_SIZE, model, task).observe(size)
    _child(BATCH_SECONDS, model, task).observe(seconds)


def on_model_load(model, seconds: float) -> None:
    MODEL_LOADS.labels(model.key).inc()
    MODEL_LOAD_SECONDS.labels(model.key).observe(seconds)
    MODELS_LOADED.labels(model.key).set(1)
    MODEL_BYTES.labels(model.key).set(model.nbytes)


def on_model_evict(model) -> None:
    MODEL_EVICTIONS.labels(model.key).inc()
    MODELS_LOADED.labels(model.key).set(0)
    MODEL_BYTES.labels(model.key).set(0)


def _start_timer():
    g.request_started = time.perf_counter()


def _record(response):
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    _child(REQUESTS, endpoint, request.method, str(response.status_code)).inc()
    if response.status_code >= 400:
        ERRORS.labels(endpoint, str(response.status_code)).inc()
    started = g.get("request_started")
    if started is not None:
        _child(LATENCY, endpoint).observe(time.perf_counter() - started)
    return response


def exposition(collectors=()) -> bytes:
    """The samples of this server (all of gunicorn's workers in multiprocess mode),
    then those `collectors` compute when scraped (web/work_metrics.py)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest()
    if collectors:
        computed = CollectorRegistry(auto_describe=False)
        for collector in collectors:
            computed.register(collector)
        text += generate_latest(computed)
    return text


def metrics_response(collectors=()) -> Response:
    return Response(exposition(collectors), mimetype=CONTENT_TYPE_LATEST)


def init_app(app):
    work_events.listen(on_run_ended)  # background work's durations, wherever it runs
    # Registered first so the timer starts before authentication runs.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    app.after_request(_record)
