"""A `limits` storage on a SQLite file: rate-limit counters shared by every
process of one host, without Redis.

gunicorn runs several workers (2 by default); `limits`' own "memory://" storage
counts per process, so each worker would let an account have the whole limit
(2x in all). `limits` has no storage that processes of one host share without a
server (Redis, Memcached, MongoDB), and the default install runs none. This is
the smallest one that does: a file under the data dir (rate_limits.db), in WAL
mode, one short transaction per hit (BEGIN IMMEDIATE takes the file's write
lock, so a check and its increment are one atomic step across processes).

Only what the service uses is here: the sliding window counter strategy (and
the plain counters every `limits` storage must have). Its windows follow
`limits`' Redis storage exactly (a window starts at an account's first hit, not
on the wall clock's minute, and a finished window's count is carried, weighted
by the time left, into the next), so an account sees the same limits whichever
storage the operator picks. Counters are not made durable on every write
(synchronous=OFF): a host crash may forget the last counts, which lets a few
more requests through; nothing else is lost.

Scheme: ``sqlite:////absolute/path/rate_limits.db`` (``sqlite:///relative``).
"""

import math
import os
import sqlite3
import threading
import time

from limits.storage.base import SlidingWindowCounterSupport, Storage

SCHEMA = ("CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, count INTEGER NOT NULL, "
          "expires_at REAL NOT NULL) WITHOUT ROWID")
# How long a hit waits for another process's transaction (each takes microseconds)
# before it fails; the caller then lets the request pass (web/rate_limits.py).
BUSY_TIMEOUT_S = 2.0
PURGE_EVERY_S = 60.0  # how often expired counters are deleted (a transaction that writes does it)


class SQLiteStorage(Storage, SlidingWindowCounterSupport):
    STORAGE_SCHEME = ["sqlite"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = uri.partition("://")[2][1:] or ":memory:"  # sqlite:///x -> x, sqlite:////x -> /x
        self._local = threading.local()
        self._last_purge = 0.0
        self._connection()  # fail at start on a path that cannot be opened, not at the first request

    @property
    def base_exceptions(self):
        return sqlite3.Error

    # --- connections: one per thread and process ---------------------------------------

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid == os.getpid():
            return connection
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                     check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute(SCHEMA)
        self._local.connection, self._local.pid = connection, os.getpid()
        return connection

    def _transaction(self, work):
        """Run work(cursor, now) in one write transaction."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            now = time.time()
            result = work(connection, now)
            if now - self._last_purge >= PURGE_EVERY_S:
                self._last_purge = now
                connection.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))
            connection.execute("COMMIT")
            return result
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    @staticmethod
    def _read(connection, key: str, now: float) -> tuple[int, float]:
        """(count, seconds left) of a live counter; (0, 0) for a missing or expired one."""
        row = connection.execute("SELECT count, expires_at FROM counters WHERE key = ?", (key,)).fetchone()
        if row is None or row[1] <= now:
            return 0, 0.0
        return int(row[0]), row[1] - now

    @staticmethod
    def _write(connection, key: str, count: int, expires_at: float) -> None:
        connection.execute("INSERT INTO counters (key, count, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) "
                           "DO UPDATE SET count = excluded.count, expires_at = excluded.expires_at",
                           (key, count, expires_at))

    # --- the sliding window counter, as limits' Redis scripts do it ----------------------

    def _window(self, connection, key: str, expiry: int, now: float) -> tuple[int, float, int, float]:
        """(previous count, its seconds left, current count, its seconds left), after
        moving a current window whose first `expiry` seconds are over to previous."""
        previous_key, current_key = f"{key}/-1", f"{key}/0"
        current, current_ttl = self._read(connection, current_key, now)
        if 0 < current_ttl < expiry:
            self._write(connection, previous_key, current, now + current_ttl)
            self._write(connection, current_key, 0, now + current_ttl + expiry)
        previous, previous_ttl = self._read(connection, previous_key, now)
        current, current_ttl = self._read(connection, current_key, now)
        return previous, previous_ttl, current, current_ttl

    def acquire_sliding_window_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False

        def acquire(connection, now):
            previous, previous_ttl, current, current_ttl = self._window(connection, key, expiry, now)
            if math.floor(previous * previous_ttl / expiry) + current + amount > limit:
                return False
            expires_at = now + current_ttl if current_ttl > 0 else now + 2 * expiry
            self._write(connection, f"{key}/0", current + amount, expires_at)
            return True

        return self._transaction(acquire)

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        return self._transaction(lambda connection, now: self._window(connection, key, expiry, now))

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        self.clear(f"{key}/-1")
        self.clear(f"{key}/0")

    # --- the plain counters every storage has --------------------------------------------

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        def increment(connection, now):
            count, ttl = self._read(connection, key, now)
            self._write(connection, key, count + amount, now + ttl if ttl > 0 else now + expiry)
            return count + amount

        return self._transaction(increment)

    def get(self, key: str) -> int:
        return self._read(self._connection(), key, time.time())[0]

    def get_expiry(self, key: str) -> float:
        now = time.time()
        return now + self._read(self._connection(), key, now)[1]

    def check(self) -> bool:
        try:
            self._connection().execute("SELECT 1")
            return True
        except sqlite3.Error:
            return False

    def reset(self) -> int | None:
        return self._transaction(lambda connection, now: connection.execute("DELETE FROM counters").rowcount)

    def clear(self, key: str) -> None:
        self._transaction(lambda connection, now: connection.execute("DELETE FROM counters WHERE key = ?", (key,)))
