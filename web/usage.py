"""Counting an account's inference requests as they are answered: the Flask hook
that adds each to this process's UsageRecorder (core/usage.py says what counts)."""

import logging
import time

from flask import current_app, g, request

from core.usage import MODEL_NAME_MAX, UsageRecorder
from web.settings import settings_of

log = logging.getLogger(__name__)



def init_app(app, database) -> UsageRecorder:
    settings = settings_of(app)
    recorder = UsageRecorder(database.sessions, settings.usage_bucket_s, settings.usage_retention_hours,
                             settings.usage_flush_s)
    app.extensions["usage"] = recorder

    def count_request(response):
        try:
            _count(recorder, inference_routes(), response)
        except Exception:  # counting must never cost a request its answer
            log.exception("Could not count a request's usage")
        return response

    app.after_request(count_request)
    return recorder


def inference_routes() -> dict[str, str]:
    """URL rule -> task of every route that runs a model for an account: the app
    factory lists them (the task routes and /v1's) once every route is registered."""
    return current_app.extensions["inference_routes"]


def _count(recorder: UsageRecorder, tasks_of_rules: dict, response) -> None:
    account_id = g.get("account_id")
    if account_id is None or request.method != "POST" or request.url_rule is None:
        return
    task = tasks_of_rules.get(request.url_rule.rule)
    if task is None:
        return
    if response.status_code == 202 and response.headers.get("Preference-Applied") == "respond-async":
        return  # queued, not run: it counts when the runner runs it (api/prediction_dispatch.py)
    model = _model_named(task)
    started = g.get("request_started") or time.perf_counter()  # web/metrics.py's timer

    def record():
        recorder.record(account_id, task, model, response.status_code, (time.perf_counter() - started) * 1000)

    if response.is_streamed:
        response.response = _then(response.response, record)
    else:
        record()


def _then(chunks, done):
    """The streamed body, then `done()`: after its last chunk, or when the server
    closes it early (the client went away)."""
    try:
        yield from chunks
    finally:
        done()


def _model_named(task: str) -> str:
    body = g.get("parsed_json_body")  # as the view's parser read it (web/blueprint.py)
    if body is None:
        try:
            body = request.get_json(force=True, silent=True)  # a view that parsed it otherwise; cached from here on
        except Exception:  # a body over the size limit, a client that went away
            body = None
    return model_named(task, body)


def model_named(task: str, body) -> str:
    """The model a request's body names, as usage records it (the task's default when it names none)."""
    from model_registry.catalogue import TASK_MODELS, default_name

    name = body.get("model") if isinstance(body, dict) else None
    if isinstance(name, str) and name:
        return name[:MODEL_NAME_MAX]
    return default_name(task) if task in TASK_MODELS else ""
