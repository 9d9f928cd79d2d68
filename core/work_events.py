"""Who hears that a run of background work ended: the metrics (web/metrics.py),
which this layer may not import (prometheus_client stays above it), listen
here. Called where runs end, embedded (core/runner.py) and in a queue worker
(core/work_queue.py), with the runner, the row and the seconds the run took here.
"""

import logging
from typing import Callable

log = logging.getLogger(__name__)

_listeners: list[Callable] = []


def listen(listener: Callable) -> None:
    """listener(runner, row_id, seconds), once per run that ended (finished, failed or handed back)."""
    if listener not in _listeners:
        _listeners.append(listener)


def run_ended(runner, row_id, seconds: float) -> None:
    for listener in list(_listeners):
        try:
            listener(runner, row_id, seconds)
        except Exception:  # a metric must never fail the work
            log.exception("work event listener")
