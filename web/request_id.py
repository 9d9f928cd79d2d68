"""A request id for every request, in the X-Request-Id response header and in the
log lines about the request, so that a client's error can be found in the log.

A proxy's or client's own id is kept when it is sane (1-64 characters of
[A-Za-z0-9._-]: nothing that could forge a log line or a header); otherwise a
new one is made. It is kept in a ContextVar (core.request_context), not only on flask.g,
because model code below the web layer reads it (model_registry's batcher).
"""

import re
import uuid

from flask import g, request

from core.request_context import current_account, current_request_id

HEADER = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,64}")


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
    current_account.set(None)


def init_app(app) -> None:
    app.before_request(_assign)
    app.after_request(_send)
    app.teardown_request(_forget)
