"""API keys: creation, hashing, lookup, revocation, and the cache of verified keys.

Keys are 256 random bits, so a single sha256 is enough to store them safely
(no dictionary to guess from; the same reasoning as GitHub's tokens) and lets a
request find its key with one indexed lookup instead of a slow KDF per call.
The request check that uses them is web/auth.py.
"""

import hashlib
import os
import secrets
import sys
import threading
import time

from sqlalchemy import func, select

from .errors import NotFound
from .tables import Account, ApiKey, utcnow

KEY_PREFIX = "ik_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key_text() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(session, account_name: str, label: str = "", key: str | None = None) -> tuple[ApiKey, str]:
    """Create a key (and the account, if new): `key`, or a new one. Returns the row
    and the key in clear."""
    account = session.scalar(select(Account).where(Account.name == account_name))
    if account is None:
        account = Account(name=account_name)
        session.add(account)
        session.flush()
    key = key or new_key_text()
    row = ApiKey(account_id=account.id, prefix=key[:10], key_hash=hash_key(key), label=label)
    session.add(row)
    session.commit()
    return row, key


def revoke_key(session, key_id: int, account_id: int | None = None) -> ApiKey:
    """Revoke a key by id; with account_id, only that account's key (else 404)."""
    query = select(ApiKey).where(ApiKey.id == key_id)
    if account_id is not None:
        query = query.where(ApiKey.account_id == account_id)
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"key {key_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def find_active_key(session, key_hash: str):
    """(key id, account id) of the active key with this hash, or None.

    A plain column query, not an ORM object: this runs on every request.
    """
    row = session.execute(
        select(ApiKey.id, ApiKey.account_id, ApiKey.revoked_at).where(ApiKey.key_hash == key_hash)
    ).first()
    if row is None or row.revoked_at is not None:
        return None
    return row


class KeyCache:
    """Keys verified in the last few seconds, so most requests skip the database.

    Looking a key up costs a connection checkout and a query on every request
    (about a third of the service's own time on a small model). Only valid keys
    are kept, by hash, so a flood of wrong keys cannot fill the cache and every
    one of them is still checked against the database. The price: a key revoked
    through another process (the CLI, another gunicorn worker) keeps working here
    for up to ``ttl_s`` seconds. A revocation through this process forgets the
    key at once. ``ttl_s`` 0 turns the cache off.
    """

    def __init__(self, ttl_s: float, max_entries: int = 10_000, clock=time.monotonic):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, int, int]] = {}  # hash -> (expiry, key id, account id)
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> tuple[int, int] | None:
        """(key id, account id) of a key verified less than ttl_s ago, else None."""
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1], entry[2]

    def put(self, key_hash: str, key_id: int, account_id: int) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # rare (that many live keys in seconds); simpler than LRU
            self._entries[key_hash] = (self._clock() + self.ttl_s, key_id, account_id)

    def forget(self, key_id: int) -> None:
        with self._lock:
            for key_hash, entry in list(self._entries.items()):
                if entry[1] == key_id:
                    del self._entries[key_hash]


def ensure_bootstrap_key(session, account_name: str, key_file: str, out=None) -> str | None:
    """On a database with no key at all, create one: written to `key_file` (owner-only)
    before it is stored, so a key is never stored that nobody can read, and printed
    only when `out` is a terminal; a log gets where it is, not the key."""
    if session.scalar(select(func.count()).select_from(ApiKey)):
        return None
    key = new_key_text()
    write_owner_only(key_file, key + "\n")
    create_key(session, account_name, label="bootstrap", key=key)
    out = out or sys.stdout
    manage = ("Manage keys with `.venv/bin/flask --app wsgi keys --help` (in the Docker image, "
              "`flask --app wsgi keys --help`).")
    if _is_terminal(out):
        message = (f"\nCreated the first API key (account {account_name!r}):\n\n    {key}\n\nSend it in the x-api-key "
                   f"header (or as Authorization: Bearer). It is also in {key_file}, readable by this user only: "
                   f"delete that file once you have kept the key. {manage}\n")
    else:  # a log stream: journald, a container's log, an aggregator keep what they are sent
        message = (f"\nCreated the first API key (account {account_name!r}). It is not printed here (this output is "
                   f"not a terminal): it is in {key_file}, readable by this user only. Read it with "
                   f"`cat {key_file}` (in Docker: `docker exec <container> cat {key_file}`), keep it, and delete "
                   f"the file. {manage}\n")
    print(message, file=out, flush=True)
    return key


def write_owner_only(path: str, text: str) -> None:
    """Write `path` readable by this user only, whole or not at all: through a new
    file beside it (never one that exists, nor a link), then renamed over it."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    partial = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise


def _is_terminal(out) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False
