"""A request id for every request, in the X-Request-Id response header and in the
log lines about the request, so that a client's error can be found in the log.

A proxy's or client's own id is kept when it is sane (1-64 characters of
[A-Za-z0-9._-]: nothing that could forge a log line or a header); otherwise a
new one is made. It is kept in a ContextVar, not only on flask.g, because model
code below the web layer reads it (model_registry's batcher, at submit).
"""

import re
import uuid
from contextvars import ContextVar

from flask import g, request

HEADER = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The id of the request being handled in this context; None outside one.
current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def _assign() -> None:
    incoming = request.headers.get(HEADER, "")
    g.request_id = incoming if _SANE.fullmatch(incoming) else uuid.uuid4().hex
    current_request_id.set(g.request_id)


def _send(response):
    if "request_id" in g:
        response.headers[HEADER] = g.request_id
    return response


def _forget(_error) -> None:
    # Server threads are reused: work done there outside a request must not find this id.
    current_request_id.set(None)


def init_app(app) -> None:
    app.before_request(_assign)
    app.after_request(_send)
    app.teardown_request(_forget)
