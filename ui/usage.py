"""The Usage page: the account's requests per task and model, their errors and
latency over a chosen window, as a table and a chart over time (GET /usage's answer)."""

import time
from datetime import datetime, timezone

from flask import render_template, request

from api.usage import usage_answer
from services import usage as usage_service
from web.settings import current_settings

from .acting import as_account
from .blueprint import bp

WINDOWS = (1, 6, 24, 168)  # hours offered
# Without a choice the page shows the shortest window that holds every request still kept (a new account's
# first requests fill an hour's chart instead of a spike at the right edge of a day); with none, this one.
DEFAULT_WINDOW = 24
# The chart's buckets: the stored bucket times the first of these that gives at
# most MAX_POINTS points (with 5-minute buckets: 5 min for 6 hours, 10 min for a
# day, an hour for a week), so a week is not 2016 points.
STEP_MULTIPLES = (1, 2, 3, 6, 12, 24, 48, 72, 144, 288)
MAX_POINTS = 200


def windows() -> list[int]:
    """The windows within the retention (older usage is deleted)."""
    retention = current_settings().usage_retention_hours
    offered = [hours for hours in WINDOWS if hours <= retention]
    return offered or [max(1, retention)]


def chosen_window(offered: list[int]) -> int | None:
    """The window the reader chose (?hours=, one of those offered), else None."""
    try:
        hours = int(request.args.get("hours", ""))
    except ValueError:
        hours = None
    return hours if hours in offered else None


def usage_of(hours: int) -> dict:
    return usage_answer(usage_service.read(as_account(), hours, chart_step(hours)))


def request_count(usage: dict) -> int:
    return sum(row["requests"] for row in usage["totals"])


def fitting_window(offered: list[int]) -> tuple[int, dict]:
    """(hours, usage) of the shortest offered window that holds as many requests as the
    longest: the span of the account's requests. Asks the longest first, then the
    shorter ones from the shortest up, so an account whose requests are all recent costs
    two queries."""
    answers = {offered[-1]: usage_of(offered[-1])}
    everything = request_count(answers[offered[-1]])
    if not everything:
        fallback = DEFAULT_WINDOW if DEFAULT_WINDOW in offered else offered[-1]
        return fallback, answers.get(fallback) or usage_of(fallback)
    for hours in offered:
        if hours not in answers:
            answers[hours] = usage_of(hours)
        if request_count(answers[hours]) >= everything:  # >=: a request may land between the two queries
            return hours, answers[hours]
    return offered[-1], answers[offered[-1]]


def chart_step(hours: int) -> int:
    bucket_s = current_settings().usage_bucket_s
    for multiple in STEP_MULTIPLES:
        if hours * 3600 / (bucket_s * multiple) <= MAX_POINTS:
            return bucket_s * multiple
    return bucket_s * STEP_MULTIPLES[-1]


def unix_seconds(iso: str) -> int:
    return int(datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())


def chart_series(usage: dict, now: float) -> dict:
    """Every bucket of the window, all tasks and models together: requests, errors
    and mean latency (null where there was no request), for static/usage.js."""
    step = usage["step_seconds"]
    start = unix_seconds(usage["since"])
    times = list(range(start, int(now // step) * step + 1, step))
    position = {moment: index for index, moment in enumerate(times)}
    requests, errors, latency_total = [0] * len(times), [0] * len(times), [0.0] * len(times)
    for bucket in usage["buckets"]:
        index = position.get(unix_seconds(bucket["start"]))
        if index is None:  # a bucket of a later clock than ours: not drawn
            continue
        requests[index] += bucket["requests"]
        errors[index] += bucket["errors"]
        latency_total[index] += (bucket["mean_latency_ms"] or 0) * bucket["requests"]
    latency = [round(total / count, 2) if count else None for total, count in zip(latency_total, requests)]
    return {"time": times, "requests": requests, "errors": errors, "latency_ms": latency, "step_seconds": step}


@bp.route("/usage")
def usage():
    offered = windows()
    chosen = chosen_window(offered)
    hours, answer = fitting_window(offered) if chosen is None else (chosen, usage_of(chosen))
    totals = answer["totals"]
    summary = {"requests": sum(row["requests"] for row in totals), "errors": sum(row["errors"] for row in totals)}
    return render_template("ui/usage.html", windows=offered, hours=hours, totals=totals, summary=summary,
                           fitted=chosen is None,
                           chart=chart_series(answer, time.time()),
                           flush_s=current_settings().usage_flush_s)
