"""One exception family, one JSON error shape per API.

Every error the service returns looks like
``{"code": 404, "status": "Not Found", "message": "...", "errors": {...}}``;
``errors`` (field name -> list of problems) is present for validation errors.
Code below the HTTP layer raises an ``ApiError`` subclass; the handlers here are
the only place that turns errors into responses.

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

from .request_id import current_request_id

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with its HTTP status.

    ``reason`` is a machine-readable cause ("model_not_found",
    "context_length_exceeded", "invalid_api_key": OpenAI's ``code``) and
    ``param`` the request field at fault; formats that have no place for them
    (the service's own) leave them out.
    """

    status = 500

    def __init__(self, message: str, errors: dict | None = None, headers: dict | None = None,
                 reason: str | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        self.reason = reason
        self.param = param


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class NotFound(ApiError):
    status = 404


class PayloadTooLarge(ApiError):
    status = 413


class InvalidInput(ApiError):
    status = 422


class TooManyRequests(ApiError):
    status = 429


class ModelUnavailable(ApiError):
    """The model exists in the catalogue but its weights cannot be had."""

    status = 503

    @classmethod
    def just_unloaded(cls, name: str) -> "ModelUnavailable":
        """For a request that reached a model as it was unloaded: a retry finds it loaded again."""
        return cls(f"Model {name} was just unloaded. Retry.", headers={"Retry-After": "1"})


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


def _format_for_request() -> ErrorFormat:
    if has_request_context():
        path = request.path
        for prefix, error_format in _formats_by_prefix.items():
            if path == prefix or path.startswith(prefix + "/"):
                return error_format
    return service_format


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
    parts = []
    for field, problems in errors.items():
        if isinstance(problems, dict):  # nested (list items, dict values)
            problems = [f"item {k}: {v}" for k, v in problems.items()]
        text = "; ".join(str(p) for p in problems) if isinstance(problems, list) else str(problems)
        parts.append(f"{field}: {text}")
    return "Invalid request. " + " ".join(parts)


def handle_http_exception(error: HTTPException):
    data = getattr(error, "data", None) or {}
    if "messages" in data:  # a marshmallow validation error raised by webargs
        errors = _flatten_validation(data["messages"])
        return error_response(error.code, _describe(errors), errors, data.get("headers"))
    message = data.get("message") or error.description or HTTP_STATUS_CODES.get(error.code, "Error")
    if error.code == 413:
        message = "Request body is too large; the limit is set by INFER_MAX_CONTENT_LENGTH."
    return error_response(error.code, message, headers=data.get("headers"))


def handle_api_error(error: ApiError):
    return error_response(error.status, error.message, error.errors, error.headers, error.reason, error.param)


def handle_database_down(error: Exception):
    log.error("database unreachable: %s", error.__class__.__name__)
    return error_response(503, "The database is unreachable; retry shortly.", headers={"Retry-After": "5"})


def handle_unexpected(error: Exception):
    request_id = current_request_id.get()
    log.exception("unhandled error on request %s", request_id)
    return error_response(500, f"Internal server error; the details are in the service log under request id {request_id}.")


def init_app(app):
    from sqlalchemy.exc import OperationalError

    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
