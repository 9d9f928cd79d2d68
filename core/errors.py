"""The service's exceptions, each with the HTTP status it stands for.

Code at any layer (model registry, uploads, sandbox glue, task views) raises
these; only the web layer (web/errors.py) turns them into responses, in the
shape of the API the request came to. Importing this module imports no web
framework.
"""


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


class Conflict(ApiError):
    """The thing is in a state that does not allow the change (a name taken, a job already finished)."""

    status = 409


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
