"""The id of the request being served in this context (a ContextVar), so that
code below the web layer (the batcher's worker threads) can log under it.

app/request_id.py sets it for every HTTP request; it is None outside one.
"""

from contextvars import ContextVar

current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
