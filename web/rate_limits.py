"""Per-account rate limits: requests per minute on the inference routes, and
generation tokens per minute on the generation routes, shared by every worker
and replica, answered as OpenAI's API answers them.

What counts: a POST to an inference route (web/usage.py inference_routes: the
Backprop tasks, /custom, /predict, /v1/embeddings, /v1/completions,
/v1/chat/completions), including one sent with `Prefer: respond-async` (it is
charged when it is queued, never again when the service runs it) and a call
the service makes for the account while serving someone (the web UI, a
prediction URL). Every such request costs one request, whatever it answers
(a vectorising request of more than INFER_MAX_BATCH_SIZE texts: one per
INFER_MAX_BATCH_SIZE texts, BATCH_FIELD_FOR_ROUTE);
the generation routes also cost their estimated tokens (web/token_estimates.py),
charged at admission, before any work. Limits are per account: all its keys
share them. The check runs as soon as the key is known (a before_request hook
right after web.auth.require_api_key), so a refused request costs no model
time and holds its thread for two storage round trips per limit (the charge,
then the window's state for the headers). A request refused for its tokens has
still been counted as a request.

The answers: over a limit, 429 with Retry-After (whole seconds until the
request would fit) and a message naming the limit, its value and how to get
more; /v1 gives it OpenAI's shape (code rate_limit_exceeded). Every answer on
a limited route carries OpenAI's headers: x-ratelimit-limit-requests,
x-ratelimit-remaining-requests, x-ratelimit-reset-requests (time until the
whole budget is back, as "1m2.5s"), and the -tokens ones on generation routes.
A request larger than the whole tokens budget can never pass: 429 without
Retry-After, saying so (OpenAI answers "Request too large" the same way).

The counting is `limits`' sliding window counter: two counters per account and
limit (this minute's and the last one's, weighted by the time left), so there
is no 2x burst at a window's edge as with a fixed window, and a hit costs one
counter update whatever its weight; the moving window would store one entry
per token (100,000 per minute for a 100k tokens limit). Where the counters live
is INFER_RATE_LIMIT_STORAGE; empty: the Redis of INFER_QUEUE_URL, else a SQLite
file shared by this host's processes (core/limits_storage.py).

Flask-Limiter was not used: it can take limits and costs from callables, but
its headers describe one limit (X-RateLimit-*, renameable, not split into
OpenAI's requests and tokens sets), its refusal is its own exception and body,
and its per-route decorators and own before_request hook would have to be
ordered against the key check, where one hook for every inference route is
all that is wanted. Its building block, `limits` (strategies, the Redis
scripts), is used as is.

When the storage cannot be reached (Redis down), requests pass unlimited: a
warning is logged once, and the storage is tried again every
RETRY_STORAGE_AFTER_S seconds rather than on every request. With every limit
at 0 (the default) nothing here touches a storage, nor even creates one.
"""

import logging
import math
import os
import threading
import time
import urllib.parse
from dataclasses import dataclass

from flask import current_app, g, request
from limits import RateLimitItemPerMinute
from limits.storage import SCHEMES, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from core import limits_storage  # noqa: F401 - registers the sqlite:// scheme with `limits`
from core.errors import TooManyRequests
from web.settings import current_settings, settings_of
from web.token_estimates import ESTIMATE_FOR_ROUTE, generation_tokens

log = logging.getLogger(__name__)

WINDOW_S = 60
REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "valkey", "valkeys", "valkey+unix")
# A Redis that does not answer must not hold request threads: each call waits at most this.
STORAGE_TIMEOUT_S = 1.0
# After a failed call, requests pass without asking the storage for this long.
RETRY_STORAGE_AFTER_S = 5.0
HOW_TO_CHANGE = ("GET /limits shows this account's limits; the operator sets them "
                 "(INFER_ACCOUNT_{setting}, or per account with `flask accounts limits`).")


@dataclass(frozen=True)
class Window:
    """One limit of one account as its storage holds it: the last window's count and
    its seconds left (its weight), this window's count and its seconds left."""

    limit: int
    previous: int
    previous_ttl: float
    current: int
    current_ttl: float

    @property
    def used(self) -> int:
        return math.floor(self.previous * self.previous_ttl / WINDOW_S) + self.current

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def reset_s(self) -> float:
        """Seconds until the whole budget is back."""
        return self.current_ttl if self.current else self.previous_ttl if self.previous else 0.0

    def seconds_until(self, cost: int) -> float | None:
        """Seconds until a hit of `cost` fits; None if it never can."""
        if cost > self.limit:
            return None
        room = self.limit - self.current - cost
        if room >= 0:  # fits once the last window's weight has decayed enough
            if not self.previous:
                return 0.0
            return max(0.0, self.previous_ttl - (room + 1) * WINDOW_S / self.previous)
        # Only after this window ends (it becomes the last one) and decays enough.
        until_shift = max(0.0, self.current_ttl - WINDOW_S)
        return until_shift + max(0.0, WINDOW_S - (self.limit - cost + 1) * WINDOW_S / self.current)


@dataclass(frozen=True)
class Charge:
    """A request's hit on one limit: what it cost, whether it passed, the window after."""

    kind: str  # "requests" or "tokens"
    cost: int
    allowed: bool
    window: Window


class AccountWindow(RateLimitItemPerMinute):
    """`limits`' per-minute item, keyed by account and kind only: its own key holds
    the amount, so a changed limit would start from a fresh, empty window."""

    def key_for(self, *identifiers) -> str:
        return "/".join(["infer", *(str(part) for part in identifiers)])


def storage_uri(config) -> str:
    """INFER_RATE_LIMIT_STORAGE, else INFER_QUEUE_URL's Redis, else the host's SQLite file."""
    uri = config.rate_limit_storage.strip()
    queue_url = config.queue_url.strip()
    if not uri and urllib.parse.urlparse(queue_url).scheme in REDIS_SCHEMES:
        uri = queue_url
    if not uri:
        uri = "sqlite:///" + os.path.join(config.data_dir, "rate_limits.db")
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme not in SCHEMES:
        raise ValueError(f"INFER_RATE_LIMIT_STORAGE: {scheme or uri!r} is not a storage `limits` knows; use "
                         f"redis://host:6379/0, memory:// or sqlite:////path/file.db.")
    return uri


def redacted(uri: str) -> str:
    """The URI without its password, for the log."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


class RateLimits:
    """The counters of every account's rate limits, in a storage made on first use."""

    def __init__(self, uri: str):
        self.uri = uri
        self.storage = None
        self._strategy = None
        self._lock = threading.Lock()
        self._retry_at = 0.0  # monotonic; while ahead, the storage is not asked
        self._failing = False

    def _open(self):
        with self._lock:
            if self.storage is None:
                scheme = urllib.parse.urlparse(self.uri).scheme
                options = {}
                if scheme in REDIS_SCHEMES:
                    options = {"key_prefix": "infer-limits", "socket_timeout": STORAGE_TIMEOUT_S,
                               "socket_connect_timeout": STORAGE_TIMEOUT_S}
                storage = storage_from_string(self.uri, **options)
                self._strategy = SlidingWindowCounterRateLimiter(storage)
                self.storage = storage
        return self.storage

    def _call(self, work):
        """work(storage, strategy), or None when the storage fails (requests then pass)."""
        if self._retry_at and time.monotonic() < self._retry_at:
            return None
        try:
            result = work(self.storage or self._open(), self._strategy)
        except Exception as exc:
            self._retry_at = time.monotonic() + RETRY_STORAGE_AFTER_S
            if not self._failing:
                self._failing = True
                log.warning("Rate limits are not enforced: their storage %s fails (%s: %s). Requests pass "
                            "unlimited; trying it again every %gs.", redacted(self.uri), type(exc).__name__, exc,
                            RETRY_STORAGE_AFTER_S)
            return None
        if self._failing:
            self._failing = False
            log.warning("Rate limits are enforced again: their storage %s answers.", redacted(self.uri))
        self._retry_at = 0.0
        return result

    def charge(self, kind: str, account_id: int, limit: int, cost: int) -> Charge | None:
        """Take `cost` from the account's `kind` budget if it fits; None if the storage failed."""
        def hit(storage, strategy):
            item = AccountWindow(limit)
            allowed = strategy.hit(item, kind, account_id, cost=cost)
            return Charge(kind, cost, allowed, self._read(storage, item, kind, account_id))

        return self._call(hit)

    def window(self, kind: str, account_id: int, limit: int) -> Window | None:
        """The account's `kind` budget, without charging it; None if the storage failed."""
        return self._call(lambda storage, strategy: self._read(storage, AccountWindow(limit), kind, account_id))

    @staticmethod
    def _read(storage, item: AccountWindow, kind: str, account_id: int) -> Window:
        return Window(item.amount, *storage.get_sliding_window(item.key_for(kind, account_id), WINDOW_S))


# --- the request hooks ---------------------------------------------------------------

def check_rate_limits():
    """before_request, right after the key check: charge the account, or 429."""
    if request.method != "POST":
        return None
    rule, routes = request.url_rule, current_app.extensions["inference_routes"]  # listed by the app factory
    account_id = g.get("account_id")
    if rule is None or rule.rule not in routes or account_id is None:
        return None
    g.rate_limit_charges = charges = []
    charge_request(account_id, rule.rule, _request_body, charges)
    return None


def _request_body():
    try:
        # Parsed here and again by the view's schema: only generation routes under a tokens limit pay it.
        return request.get_json(force=True, silent=True)
    except (ValueError, RecursionError):  # nested too deeply for the parser: the view refuses it
        return None


def charge_request(account_id: int, route: str, read_body, charges: list) -> None:
    """Charge the account for one request to the inference route `route` (its body
    read by `read_body()` only if a limit needs it: tokens, or requests on a
    large-batch route), adding each charge to `charges`; 429 when a budget is spent. The request hook above, and runs made
    for an account while a client waits (api/prediction_dispatch.py)."""
    extensions = current_app.extensions
    limits = extensions["account_limits"].get(account_id)
    if not limits.rate_limited:
        return  # the hot path when limits are off: a dict lookup, no storage call
    tokens = 0
    if limits.tokens_per_min and route in ESTIMATE_FOR_ROUTE:
        tokens = generation_tokens(route, read_body(), current_settings())
        if tokens > limits.tokens_per_min:
            raise too_large(tokens, limits.tokens_per_min)  # before counting anything: it can never pass
    requests = 1
    if limits.requests_per_min and route in BATCH_FIELD_FOR_ROUTE:
        requests = request_units(route, read_body(), current_settings())
        if requests > limits.requests_per_min:
            raise too_many_texts(requests, limits.requests_per_min)
    rate_limits: RateLimits = extensions["rate_limits"]
    for kind, limit, cost in (("requests", limits.requests_per_min, requests),
                              ("tokens", limits.tokens_per_min, tokens)):
        charge = rate_limits.charge(kind, account_id, limit, cost) if limit and cost else None
        if charge is not None:
            charges.append(charge)
            if not charge.allowed:
                raise refused(charge)


# Routes that take more texts in one request than a batch of the others
# (INFER_MAX_EMBEDDING_INPUTS against INFER_MAX_BATCH_SIZE), and the field that
# holds them: a request there counts as one request per INFER_MAX_BATCH_SIZE
# texts, so a requests-per-minute limit bounds the same work as on other routes.
# route -> the fields that may hold its texts (a rerank request's documents: TEI's name or infinity's).
BATCH_FIELD_FOR_ROUTE = {"/text-vectorisation": ("text",), "/v1/embeddings": ("input",),
                         "/rerank": ("texts", "documents"), "/v1/rerank": ("documents",)}
# The most texts each route takes (a setting's name): past it, the view refuses the body.
MOST_TEXTS_FOR_ROUTE = {"/rerank": "max_rerank_documents", "/v1/rerank": "max_rerank_documents"}


def request_units(route: str, body, config) -> int:
    """The requests a request to a large-batch route counts as (1 for a body the
    view will refuse, or one of at most INFER_MAX_BATCH_SIZE texts)."""
    lists = [body.get(name) for name in BATCH_FIELD_FOR_ROUTE[route]] if isinstance(body, dict) else []
    texts = next((value for value in lists if isinstance(value, list)), None)
    most = getattr(config, MOST_TEXTS_FOR_ROUTE.get(route, "max_embedding_inputs"))
    count = min(len(texts), most) if texts is not None else 1
    return max(1, math.ceil(count / config.max_batch_size))


def too_many_texts(units: int, limit: int) -> TooManyRequests:
    return TooManyRequests(f"Request too large: its texts count as {units} requests (one per INFER_MAX_BATCH_SIZE "
                           f"texts) and this account may send {limit} per minute, so it can never pass. Send "
                           f"fewer texts per request. " + HOW_TO_CHANGE.format(setting="REQUESTS_PER_MIN"),
                           reason="rate_limit_exceeded")


def tokens_explained(limit: int, cost: int) -> str:
    return (f"{limit} generation tokens per minute (a request costs its prompt's characters / 4 plus its most new "
            f"tokens x its outputs: this one {cost})")


def too_large(cost: int, limit: int) -> TooManyRequests:
    # No Retry-After: retrying cannot help (OpenAI's SDKs still retry a 429 a few times).
    return TooManyRequests(f"Request too large: this account may use {tokens_explained(limit, cost)}, so this "
                           f"request can never pass. Lower max_tokens (or n), or send a shorter prompt. "
                           + HOW_TO_CHANGE.format(setting="TOKENS_PER_MIN"), reason="rate_limit_exceeded")


def refused(charge: Charge) -> TooManyRequests:
    window = charge.window
    retry_after = max(1, math.ceil(window.seconds_until(charge.cost) or 0))
    if charge.kind == "requests":
        what, setting = f"send {window.limit} requests per minute to the inference routes", "REQUESTS_PER_MIN"
    else:
        what, setting = f"use {tokens_explained(window.limit, charge.cost)}", "TOKENS_PER_MIN"
    return TooManyRequests(f"Rate limit reached: this account may {what}; it has used "
                           f"{window.limit - window.remaining}. Retry in {retry_after} s. "
                           + HOW_TO_CHANGE.format(setting=setting),
                           headers={"Retry-After": str(retry_after)}, reason="rate_limit_exceeded")


def add_rate_limit_headers(response):
    """after_request: OpenAI's x-ratelimit-* headers, on answers and refusals alike."""
    for charge in g.get("rate_limit_charges") or ():
        window = charge.window
        response.headers[f"x-ratelimit-limit-{charge.kind}"] = str(window.limit)
        response.headers[f"x-ratelimit-remaining-{charge.kind}"] = str(window.remaining)
        response.headers[f"x-ratelimit-reset-{charge.kind}"] = duration(window.reset_s)
    return response


def duration(seconds: float) -> str:
    """OpenAI's form of the reset headers: "20ms", "6s", "1m30.5s"."""
    seconds = round(max(0.0, seconds), 3)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def init_app(app) -> RateLimits:
    """Register right after require_api_key (it needs the account) and before the
    asynchronous-prediction hook (an async submit is charged when it is queued)."""
    app.extensions["rate_limits"] = rate_limits = RateLimits(storage_uri(settings_of(app)))
    app.before_request(check_rate_limits)
    app.after_request(add_rate_limit_headers)
    return rate_limits
