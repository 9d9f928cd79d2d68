"""The database as /readyz sees it: unreachable for a moment is not unready.

A PostgreSQL restart or failover takes every replica's database away at the same
moment; failing readiness at the first failed ping would take every replica
out of rotation at once, and the requests that need no database (predictions
with a cached key) would fail with them. So readiness fails only once pings
have failed for INFER_READY_DB_GRACE_S without a success between.
"""

import threading
import time


class DatabaseWatch:
    def __init__(self, ping, grace_s: float, clock=time.monotonic):
        self._ping = ping
        self.grace_s = grace_s
        self._clock = clock
        self._failing_since: float | None = None
        self._lock = threading.Lock()

    def check(self) -> tuple[bool, str]:
        """(ready as far as the database goes, what to report)."""
        try:
            self._ping()
        except Exception as exc:
            now = self._clock()
            with self._lock:
                if self._failing_since is None:
                    self._failing_since = now
                down_s = now - self._failing_since
            reason = f"unreachable for {down_s:.0f} s: {type(exc).__name__}"
            if down_s < self.grace_s:
                return True, f"{reason} (ready for up to {self.grace_s:g} s: INFER_READY_DB_GRACE_S)"
            return False, reason
        with self._lock:
            self._failing_since = None
        return True, "ok"
