"""Each account's limits: the operator's defaults (settings), replaced by the
account's own where the operator set them (`flask accounts limits NAME`,
PUT /admin/accounts/{name}/limits).

Read on every request (the rate limits, web/rate_limits.py; the in-flight limit,
web/admission.py), so a process keeps what it read for
INFER_ACCOUNT_LIMITS_CACHE_TTL_S seconds: a cache hit is a dict lookup, no
database round trip. The price is the same as the key cache's (core/keys.py): a
change made through another process (the CLI, another gunicorn worker or
replica) applies here within that TTL; one made through this process applies
at once. If the database cannot be read, the last limits read stay in force
(or the defaults, for an account never read): a database blip must not turn
into refused requests that the key cache would still serve.
"""

import logging
import threading
import time
from dataclasses import dataclass, fields

from flask import current_app
from sqlalchemy import select

from core.settings import Settings
from core.tables import Account, AccountLimitOverride, utcnow
from web.settings import settings_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountLimits:
    """An account's effective limits; 0 means no limit."""

    requests_per_min: int
    tokens_per_min: int
    max_in_flight: int

    @property
    def rate_limited(self) -> bool:
        return bool(self.requests_per_min or self.tokens_per_min)


LIMIT_NAMES = tuple(field.name for field in fields(AccountLimits))
# The setting that holds each limit's default.
SETTING_OF = {"requests_per_min": "ACCOUNT_REQUESTS_PER_MIN", "tokens_per_min": "ACCOUNT_TOKENS_PER_MIN",
              "max_in_flight": "ACCOUNT_MAX_IN_FLIGHT"}
# The columns are 32-bit integers in every database.
MOST = 2**31 - 1


def defaults_from(settings: Settings) -> AccountLimits:
    return AccountLimits(**{name: getattr(settings, SETTING_OF[name].lower()) for name in LIMIT_NAMES})


def effective(defaults: AccountLimits, overrides: dict) -> AccountLimits:
    """The defaults, with the account's own values (None: not set) in their place."""
    return AccountLimits(**{name: overrides[name] if overrides.get(name) is not None else getattr(defaults, name)
                            for name in LIMIT_NAMES})


# --- reading and writing an account's own values ------------------------------------

def find_account(session, name: str) -> Account | None:
    return session.scalar(select(Account).where(Account.name == name))


def overrides_of(session, account_id: int) -> dict:
    """The account's own values: {limit name: value, or None where it takes the default}."""
    columns = [getattr(AccountLimitOverride, name) for name in LIMIT_NAMES]
    row = session.execute(select(*columns).where(AccountLimitOverride.account_id == account_id)).first()
    return dict(zip(LIMIT_NAMES, row if row is not None else (None,) * len(LIMIT_NAMES)))


def set_overrides(session, account_id: int, changes: dict, reset: bool = False) -> dict:
    """Set some of the account's own values (None: back to the default), after
    clearing them all when `reset`; commits and returns its values. A row left
    with no value is deleted: the account then follows every default."""
    row = session.get(AccountLimitOverride, account_id)
    values = {name: None for name in LIMIT_NAMES} if reset or row is None else \
        {name: getattr(row, name) for name in LIMIT_NAMES}
    values.update({name: changes[name] for name in LIMIT_NAMES if name in changes})
    if all(value is None for value in values.values()):
        if row is not None:
            session.delete(row)
    else:
        if row is None:
            row = AccountLimitOverride(account_id=account_id)
            session.add(row)
        for name, value in values.items():
            setattr(row, name, value)
        row.updated_at = utcnow()
    session.commit()
    forget(account_id)
    return values


# --- the per-process cache ------------------------------------------------------------

class AccountLimitsCache:
    """Effective limits per account, read at most once per `ttl_s` per account."""

    def __init__(self, sessions, defaults: AccountLimits, ttl_s: float, max_entries: int = 100_000,
                 clock=time.monotonic):
        self.sessions = sessions
        self.defaults = defaults
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[int, tuple[float, AccountLimits]] = {}  # account id -> (expiry, limits)
        self._lock = threading.Lock()

    def get(self, account_id: int) -> AccountLimits:
        entry = self._entries.get(account_id)  # a dict read is atomic: no lock on the hot path
        now = self._clock()
        if entry is not None and entry[0] > now:
            return entry[1]
        try:
            with self.sessions() as session:
                limits = effective(self.defaults, overrides_of(session, account_id))
        except Exception:
            limits = entry[1] if entry is not None else self.defaults
            log.warning("Could not read account %s's limits; using %s until the database answers",
                        account_id, "the last ones read" if entry is not None else "the defaults", exc_info=True)
            now += min(self.ttl_s, 1.0)  # not the whole TTL: back to the database soon
            self._put(account_id, now, limits)
            return limits
        self._put(account_id, now + self.ttl_s, limits)
        return limits

    def _put(self, account_id: int, expiry: float, limits: AccountLimits) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # that many accounts within a TTL: rare; simpler than LRU
            self._entries[account_id] = (expiry, limits)

    def forget(self, account_id: int) -> None:
        with self._lock:
            self._entries.pop(account_id, None)


def init_app(app, database) -> AccountLimitsCache:
    cache = AccountLimitsCache(database.sessions, defaults_from(settings_of(app)),
                               settings_of(app).account_limits_cache_ttl_s)
    app.extensions["account_limits"] = cache
    return cache


def account_limits(account_id: int) -> AccountLimits:
    """The account's effective limits (cached per process; see the module's docstring)."""
    return current_app.extensions["account_limits"].get(account_id)


def forget(account_id: int) -> None:
    """After a change through this process: read the account's limits again at its next request."""
    cache = current_app.extensions.get("account_limits")
    if cache is not None:
        cache.forget(account_id)
