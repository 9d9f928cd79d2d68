"""An account's inference requests per task and model, with their errors and
latency, over the last hours (core/usage.py stores them, web/usage.py counts each request)."""

import logging
import time
from dataclasses import dataclass

from core.usage import account_usage

from .account import ServiceContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountUsage:
    hours: int
    since: int  # unix seconds: the first bucket's start
    step: int  # seconds per bucket
    buckets: list[dict]  # per bucket, task and model; "start" in unix seconds
    totals: list[dict]  # per task and model, over the window


def read(ctx: ServiceContext, hours: int, step: int | None = None) -> AccountUsage:
    """The account's usage over the last `hours` in buckets of `step` seconds
    (default: the stored buckets')."""
    recorder = ctx.part("usage")
    try:
        recorder.flush()  # this process's latest requests, so a caller sees its own last one
    except Exception:  # they stay pending for the next flush; answer with what is stored
        log.warning("Could not store the usage counts before reading an account's usage", exc_info=True)
    step = step or recorder.bucket_s
    since = recorder.bucket_of(time.time() - hours * 3600, step)
    buckets, totals = account_usage(ctx.db, ctx.account_id, since, step)
    return AccountUsage(hours, since, step, buckets, totals)
