"""Running an inference route's work as an account, without an HTTP request.

Asynchronous predictions (predictions/runner.py), prediction URLs
(api/prediction_urls.py) and the web UI's playground (ui/playground.py) run a
task for an account. They call the route's own work directly: the body is read
by the route's request schema (the same limits and messages), the function its
view runs makes the answer, which the route's response schema writes, and an
error is rendered as the route renders it (the service's shape, or OpenAI's on
/v1), so (status, JSON body) is what the same request sent with the account's
key answers.

The run acts as the account: the model is found by the resolver for that
account (web/task_models.py reads the account from `g`, set here in an app
context of the run's own) and the batcher shares models by core/request_context.
It counts once in the account's usage. A run a client waits for (a prediction
URL, the playground) is charged to the account's rate limits and in-flight
limit as the request would be; a background run (an asynchronous prediction)
was charged when it was submitted, and is not again.
"""

import contextvars
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from flask import Flask, g
from marshmallow import ValidationError

from api.task_routes import answer as task_answer
from core.errors import BadRequest, NotFound, TooManyRequests
from core.request_context import current_account, current_request_id
from openai_api.completions import (
    ChatCompletion,
    ChatCompletionBody,
    CompletionBody,
    TextCompletion,
    chat_completion,
    text_completion,
)
from openai_api.embeddings import EmbeddingsBody, EmbeddingsResponse, embeddings
from openai_api.rerank import V1RerankBody, V1RerankResponse
from openai_api.rerank import rerank as v1_rerank
from predictions.runner import WaitAbandoned
from tasks import rerank, text_generation, text_vectorisation
from tasks.spec import TASK_SPECS
from web import admission, rate_limits
from web.errors import error_answer, format_for_path, validation_details
from web.usage import model_named

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceRoute:
    """What a run needs of a route: its task, schemas and work."""

    task: str
    request_schema: type
    response_schema: type
    work: Callable[[dict], object]  # the loaded body -> the answer, as the view makes it
    invalid_status: int  # what the route answers a body its schema refuses: 422, or OpenAI's 400 on /v1
    streams: bool = False  # takes "stream": true (an event stream, which a run has nobody to send to)


OPENAI_ROUTES = {
    "/v1/embeddings": InferenceRoute(text_vectorisation.TASK, EmbeddingsBody, EmbeddingsResponse, embeddings, 400),
    "/v1/completions": InferenceRoute(text_generation.TASK, CompletionBody, TextCompletion, text_completion, 400,
                                      streams=True),
    "/v1/chat/completions": InferenceRoute(text_generation.TASK, ChatCompletionBody, ChatCompletion,
                                           chat_completion, 400, streams=True),
    "/v1/rerank": InferenceRoute(rerank.TASK, V1RerankBody, V1RerankResponse, v1_rerank, 400),
}


def inference_route(path: str) -> InferenceRoute | None:
    """The route at `path`: a task route (api/task_routes.py) or one of /v1's."""
    for spec in TASK_SPECS.values():  # looked up at each run: a spec registered later (a test's) too
        if spec.path == path:
            return InferenceRoute(spec.name, spec.request_schema, spec.response_schema, partial(task_answer, spec),
                                  422)
    return OPENAI_ROUTES.get(path)


def run_as(app: Flask, account_id: int, path: str, body: dict, request_id: str | None = None,
           background: bool = False) -> tuple[int, object]:
    """Run the inference route at `path` on `body` as `account_id`: (status, JSON
    answer), as the route answers the same body sent with the account's key.
    `background`: for work no client waits on now (not charged to the limits)."""
    # A context of its own: the request id and account set for the run, and the
    # app context pushed, end with it (a caller serving a request keeps its own).
    return contextvars.copy_context().run(_run, app, account_id, path, body, request_id, background)


def _run(app: Flask, account_id: int, path: str, body: dict, request_id: str | None,
         background: bool) -> tuple[int, object]:
    request_id = request_id or uuid.uuid4().hex  # as web/request_id.py gives a request that brings none
    current_request_id.set(request_id)
    current_account.set(account_id)
    started = time.perf_counter()
    route = inference_route(path)
    with app.app_context():
        g.api_key_id, g.account_id = None, account_id  # what web/auth.py sets for a key's request
        g.request_id = request_id
        if route is None:
            status, answer = error_answer(NotFound(f"{path} is not an inference route."), path)
        else:
            status, answer = _answer(route, account_id, path, body, background)
            _count_usage(app, account_id, route.task, body, status, started)
        # As the answer would be sent: the app's JSON (numpy values, integer keys), read back.
        return status, app.json.loads(app.json.dumps(answer))


def _answer(route: InferenceRoute, account_id: int, path: str, body: dict, background: bool) -> tuple[int, object]:
    admitted = False
    try:
        if not background:  # in the order of the request's hooks: rate limits, then the in-flight limit
            rate_limits.charge_request(account_id, path, lambda: body, [])
            admission.enter(account_id)
            admitted = True
        try:
            loaded = route.request_schema().load(body)
        except ValidationError as exc:
            return format_for_path(path)(validation_details(route.invalid_status, exc.messages))
        if route.streams and loaded.get("stream"):
            raise BadRequest("stream cannot be used here: its answer is one JSON object. Leave stream out.",
                             errors={"stream": ["Only false here."]}, param="stream")
        return 200, route.response_schema().dump(route.work(loaded))
    except Exception as error:  # rendered as the route's error handlers render it
        return error_answer(error, path)
    finally:
        if admitted:
            admission.leave(account_id)


def _count_usage(app: Flask, account_id: int, task: str, body: dict, status: int, started: float) -> None:
    try:
        app.extensions["usage"].record(account_id, task, model_named(task, body), status,
                                       (time.perf_counter() - started) * 1000)
    except Exception:  # counting must never cost a run its answer (as web/usage.py)
        log.exception("Could not count a run's usage")


def run_in_background(app: Flask, account_id: int, path: str, body: dict, request_id: str | None) -> tuple[int, object]:
    """An asynchronous prediction's stored request, run as its account (predictions/runner.py)."""
    return run_as(app, account_id, path, body, request_id, background=True)


# Longest single wait for room in the account's rate limits, in seconds: a wait
# is the limit's Retry-After, looked at again after at most this long.
METERED_WAIT_S = 5.0


def run_metered(app: Flask, account_id: int, path: str, body: dict, request_id: str | None,
                sleep=time.sleep, abandon: Callable[[], bool] = lambda: False) -> tuple[int, object]:
    """One request of a batch's or an evaluation's many, run as its account once it is
    charged to the account's rate limits as the client's own request would be: work
    that runs in the background is still the account's share, so a batch of thousands
    of lines takes what the same requests sent one by one would, no more. Over a
    limit it waits for room (Retry-After) instead of failing, unless abandon() says
    its run is cancelled or its process stopping (WaitAbandoned); a request that can
    never fit (larger than the whole budget) is answered the 429 the route would give."""
    while True:
        try:
            with app.app_context():
                rate_limits.charge_request(account_id, path, lambda: body, [])
            break
        except TooManyRequests as refused:
            retry_after = (refused.headers or {}).get("Retry-After")
            if retry_after is None:
                return error_answer(refused, path)
            if abandon():
                raise WaitAbandoned(f"{path} gave up waiting for room in account {account_id}'s rate limits")
            sleep(min(float(retry_after), METERED_WAIT_S))
    return run_in_background(app, account_id, path, body, request_id)
