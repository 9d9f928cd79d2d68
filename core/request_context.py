"""What code below the web layer needs to know about the request it serves, as
ContextVars: the request's id (the batcher's worker threads log under it) and the
account it acts for (the batcher shares a model fairly between accounts).

web/request_id.py sets the id and web/auth.py the account for every HTTP
request; both are None outside one.
"""

from contextvars import ContextVar

current_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
current_account: ContextVar[int | None] = ContextVar("account", default=None)
