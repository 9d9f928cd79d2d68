"""One exception family, one JSON error shape per API.

Every error the service returns looks like
``{"code": 404, "status": "Not Found", "message": "...", "errors": {...}}``;
``errors`` (field name -> list of problems) is present for validation errors.
Code at every layer raises an ``ApiError`` subclass (core/errors.py, free of
Flask); the handlers here are the only place that turns errors into responses.

An API that lives under its own path prefix and promises another shape (the
OpenAI-compatible /v1) registers an error format for that prefix with
``register_error_format``; every error on its paths, including those raised
before its views run (a missing key, an unknown route, a body too large), is
then shaped by that format instead.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from core.errors import (  # noqa: F401 - also importable from here
    ApiError,
    BadRequest,
    InvalidInput,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
)
from core.request_context import current_request_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ErrorDetails:
    """Everything an error says, before a format shapes it into a body."""

    status: int
    message: str
    errors: dict | None = None  # field name -> problems, for validation errors
    reason: str | None = None
    param: str | None = None


# An error format: the details in, (HTTP status, JSON body) out. A format may
# change the status (OpenAI answers 400 where webargs says 422).
ErrorFormat = Callable[[ErrorDetails], tuple[int, dict]]


def service_format(error: ErrorDetails) -> tuple[int, dict]:
    """The service's own shape, Backprop's."""
    payload = {"code": error.status, "status": HTTP_STATUS_CODES.get(error.status, "Error"), "message": error.message}
    if error.errors:
        payload["errors"] = error.errors
    return error.status, payload


# path prefix ("/v1") -> the format of every error under it
_formats_by_prefix: dict[str, ErrorFormat] = {}


def register_error_format(path_prefix: str, error_format: ErrorFormat) -> None:
    """Shape every error whose request path is ``path_prefix`` or under it with ``error_format``."""
    _formats_by_prefix[path_prefix.rstrip("/")] = error_format


def format_for_path(path: str) -> ErrorFormat:
    """The error format of the API that `path` belongs to."""
    for prefix, error_format in _formats_by_prefix.items():
        if path == prefix or path.startswith(prefix + "/"):
            return error_format
    return service_format


def _format_for_request() -> ErrorFormat:
    return format_for_path(request.path) if has_request_context() else service_format


def error_response(status: int, message: str, errors: dict | None = None, headers: dict | None = None,
                   reason: str | None = None, param: str | None = None):
    status, payload = _format_for_request()(ErrorDetails(status, message, errors, reason, param))
    response = jsonify(payload)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten_validation(messages: dict) -> dict:
    """webargs nests errors by location ({"json": {"text": [...]}}); callers only send JSON."""
    flat = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            flat.update(fields)
        else:
            flat[location] = fields
    return flat


def _describe(errors: dict) -> str:
    return "Invalid request. " + " ".join(problems if where == "_schema" else f"{where}: {problems}"
                                          for where, problems in _problem_lines("", errors))


def _problem_lines(where: str, problems) -> list[tuple[str, str]]:
    """(where, what is wrong) for every problem of a marshmallow error tree, a
    nested one (list items, dict values) named by its path, `messages[0].content`,
    so that the message never shows a Python dict or list."""
    if isinstance(problems, dict):
        lines = []
        for key, inner in problems.items():
            key = str(key)
            path = (f"{where}[{key}]" if key.isdigit() else f"{where}.{key}" if where and key != "_schema"
                    else where or key)
            lines.extend(_problem_lines(path, inner))
        return lines
    if isinstance(problems, (list, tuple)):
        if all(isinstance(problem, str) for problem in problems):
            return [(where or "body", "; ".join(problems))]
        return [line for problem in problems for line in _problem_lines(where, problem)]
    return [(where or "body", str(problems))]


def validation_details(status: int, messages: dict) -> ErrorDetails:
    """What a JSON body schema's ValidationError says, as webargs' refusal of that
    body reads (the status is the route's: 422, or 400 on /v1)."""
    return ErrorDetails(status, _describe(messages), messages)


def validation_error(messages: dict) -> InvalidInput:
    """The 422 a schema's ValidationError makes, as webargs' would read (a check
    made outside a view, e.g. before an asynchronous prediction is queued)."""
    return InvalidInput(_describe(messages), messages)


def handle_http_exception(error: HTTPException):
    data = getattr(error, "data", None) or {}
    if "messages" in data:  # a marshmallow validation error raised by webargs
        errors = _flatten_validation(data["messages"])
        return error_response(error.code, _describe(errors), errors, data.get("headers"))
    message = data.get("message") or error.description or HTTP_STATUS_CODES.get(error.code, "Error")
    reason = None
    if error.code in (404, 405) and not data.get("message") and _as_routing(error):
        message, reason = _routing_refusal(error)
    if error.code == 413:
        # An endpoint that takes larger bodies names its own limit (request.body_limit_setting).
        setting = getattr(request, "body_limit_setting", "INFER_MAX_CONTENT_LENGTH") if has_request_context() \
            else "INFER_MAX_CONTENT_LENGTH"
        message = f"Request body is too large; the limit is set by {setting}."
    return error_response(error.code, message, headers=data.get("headers"), reason=reason)


def _as_routing(error: HTTPException) -> bool:
    """Routing said no, or a view answers as routing would (werkzeug's own 404, its
    words unchanged: a route hidden from those who may not know it exists,
    api/limits.py), so both get the same answer."""
    if not has_request_context():
        return False
    return request.url_rule is None or error.description == type(error).description


def _routing_refusal(error: HTTPException) -> tuple[str, str]:
    """What a request no route takes is told, with a machine-readable reason (OpenAI's
    clients read it as `code`): say what there is instead of werkzeug's generic text."""
    where = f"{request.method} {request.path}"
    if error.code == 405:
        allowed = sorted(set(getattr(error, "valid_methods", None) or ()) - {"HEAD", "OPTIONS"})
        return f"{where} is not a route: {request.path} takes {', '.join(allowed) or 'no method'}.", \
            "method_not_allowed"
    return f"Unknown URL: {where}. The routes are listed at /docs and in /openapi.json.", "unknown_url"


def handle_api_error(error: ApiError):
    return error_response(error.status, error.message, error.errors, error.headers, error.reason, error.param)


def handle_database_down(error: Exception):
    log.error("database unreachable: %s", error.__class__.__name__)
    return error_response(503, "The database is unreachable; retry shortly.", headers={"Retry-After": "5"})


def handle_unexpected(error: Exception):
    request_id = current_request_id.get()
    log.exception("unhandled error on request %s", request_id)
    return error_response(500, f"Internal server error; the details are in the service log under request id {request_id}.")


def error_answer(error: Exception, path: str) -> tuple[int, dict]:
    """(status, JSON body) the route at `path` answers for `error`, as the handlers
    below render it: for code that runs a route's work without an HTTP request
    (api/prediction_dispatch.py)."""
    from sqlalchemy.exc import OperationalError

    if isinstance(error, ApiError):
        details = ErrorDetails(error.status, error.message, error.errors, error.reason, error.param)
    elif isinstance(error, HTTPException):
        details = ErrorDetails(error.code, error.description or HTTP_STATUS_CODES.get(error.code, "Error"))
    elif isinstance(error, OperationalError):
        log.error("database unreachable: %s", error.__class__.__name__)
        details = ErrorDetails(503, "The database is unreachable; retry shortly.")
    else:
        request_id = current_request_id.get()
        log.error("unhandled error on request %s", request_id, exc_info=error)
        details = ErrorDetails(500, "Internal server error; the details are in the service log under request id "
                                    f"{request_id}.")
    return format_for_path(path)(details)


def init_app(app):
    from sqlalchemy.exc import OperationalError

    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
