"""OpenAI's error shape, for every error under /v1.

OpenAI's SDKs read ``{"error": {"message", "type", "param", "code"}}`` and pick
their exception class from the HTTP status (400 BadRequestError, 401
AuthenticationError, 404 NotFoundError, 429 RateLimitError...), so /v1 answers
in that shape with OpenAI's statuses; web/errors.py applies it to every error on
these paths, raised by the views or before them.
"""

from marshmallow import Schema, fields

from web.blueprint import Blueprint
from web.errors import ErrorDetails

# webargs and the service's own checks say 422 for a body that does not
# validate; OpenAI says 400, and its SDKs have no class for 422.
STATUS_FOR = {422: 400}

# OpenAI's `code` where the error itself gives none.
DEFAULT_CODE = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


def error_type(status: int) -> str:
    if status == 429:
        return "requests"  # what OpenAI sends for a rate limit
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


def first_field(errors: dict | None) -> str | None:
    """The request field at fault in a validation error (None for the body as a whole)."""
    for field in errors or {}:
        if field != "_schema":
            return str(field)
    return None


def openai_format(error: ErrorDetails) -> tuple[int, dict]:
    status = STATUS_FOR.get(error.status, error.status)
    return status, {
        "error": {
            "message": error.message,
            "type": error_type(status),
            "param": error.param or first_field(error.errors),
            "code": error.reason or DEFAULT_CODE.get(status),
        }
    }


class OpenAIErrorDetail(Schema):
    message = fields.String()
    type = fields.String(metadata={"description": "invalid_request_error, requests (rate limit) or server_error"})
    param = fields.String(allow_none=True, metadata={"description": "The request field at fault, if one is."})
    code = fields.String(
        allow_none=True, metadata={"description": "A machine-readable cause: model_not_found, invalid_api_key..."}
    )


class OpenAIError(Schema):
    error = fields.Nested(OpenAIErrorDetail)


def documented_errors(*statuses: str):
    """Document OpenAI's error shape for the view's error responses ("default",
    and the status its body validation answers), in place of the service's."""
    response = {"description": "OpenAI's error shape", "content": {"application/json": {"schema": OpenAIError}}}
    return Blueprint.doc(responses={status: response for status in ("default", *statuses)})
