"""How many of one account's requests a server process works on at once.

A gunicorn worker serves INFER_THREADS requests at a time; the connections
beyond those wait in gunicorn's own queue, where nothing knows whose they are.
An account that opens hundreds of connections would hold every thread, and the
other accounts' requests would wait behind its backlog however fairly the
models share their batches. So, as soon as a request's key is known, it counts
against its account's in-flight requests in this process; one over the limit
(INFER_ACCOUNT_MAX_IN_FLIGHT, or the account's own, web/account_limits.py) is
answered 429 at once, in well under a millisecond, and its thread goes back to
the pool. The limit is below the thread count, so other accounts always find
threads, and gunicorn's queue, whatever the flood, drains at that speed.

A request counts until its answer is made, a stream until its last event is sent.
Asynchronous predictions run by the service (predictions/runner.py,
api/prediction_dispatch.py) do not count: they are bounded by
INFER_PREDICTION_THREADS and their own per-account cap. A run made for an
account while a client waits (a prediction URL, the playground) does.
"""

import threading

from flask import current_app, g

from core.errors import TooManyRequests
from web.account_limits import account_limits


class InFlight:
    """Requests in progress per account in this process."""

    def __init__(self):
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()

    def enter(self, account_id: int, limit: int) -> int | None:
        """Count one more request of the account; None (and nothing counted) if it
        already has `limit` in progress (0: no limit), else its new count."""
        with self._lock:
            count = self._counts.get(account_id, 0)
            if limit and count >= limit:
                return None
            self._counts[account_id] = count + 1
            return count + 1

    def leave(self, account_id: int) -> None:
        with self._lock:
            count = self._counts.get(account_id, 0) - 1
            if count > 0:
                self._counts[account_id] = count
            else:
                self._counts.pop(account_id, None)

    def count(self, account_id: int) -> int:
        return self._counts.get(account_id, 0)


def _limit(account_id: int) -> int:
    return account_limits(account_id).max_in_flight


def admit():
    """before_request hook, right after the key check."""
    account_id = g.get("account_id")
    if account_id is None:
        return None
    enter(account_id)
    g.in_flight_account = account_id
    return None


def enter(account_id: int) -> None:
    """Count one more of the account's requests in progress, or 429 over its limit;
    `leave` when it is answered. The hook above, and runs made for an account while
    a client waits (api/prediction_dispatch.py)."""
    limit = _limit(account_id)
    if current_app.extensions["in_flight"].enter(account_id, limit) is None:
        raise TooManyRequests(
            f"This account already has {limit} requests in progress on this server process, its limit "
            "(INFER_ACCOUNT_MAX_IN_FLIGHT). Wait for answers before sending more, or send several inputs per "
            "request.", headers={"Retry-After": "1"}, reason="rate_limit_exceeded")


def leave(account_id: int) -> None:
    current_app.extensions["in_flight"].leave(account_id)


def _release_when_streamed(response):
    """after_request: a streamed answer (server-sent events) leaves when its last
    event has been sent, not when the view returns."""
    if response.is_streamed:
        account_id = g.pop("in_flight_account", None)
        if account_id is not None:
            in_flight: InFlight = current_app.extensions["in_flight"]
            response.call_on_close(lambda: in_flight.leave(account_id))
    return response


def _release(_error) -> None:
    """teardown_request: any other request leaves once its answer is made (its
    body is in memory; sending it costs the thread next to nothing)."""
    account_id = g.pop("in_flight_account", None)
    if account_id is not None:
        current_app.extensions["in_flight"].leave(account_id)


def init_app(app) -> None:
    """Register after web.auth.require_api_key."""
    app.extensions["in_flight"] = InFlight()
    app.before_request(admit)
    app.after_request(_release_when_streamed)
    app.teardown_request(_release)
