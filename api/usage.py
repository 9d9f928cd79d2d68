"""GET /usage: your account's inference requests per task and model, with their
errors and latency, over the last hours (web/usage.py counts them)."""

from datetime import datetime, timezone

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate

from services import usage
from web.blueprint import Blueprint
from web.service_context import api_context
from web.settings import current_settings

blp = Blueprint("usage", __name__, url_prefix="/usage",
                description="Your account's requests per task and model, and their latency.")

DEFAULT_HOURS = 24


def _within_retention(hours: int) -> None:
    most = float(current_settings().usage_retention_hours)
    if hours > most:
        raise ValidationError(f"At most {most:g} (INFER_USAGE_RETENTION_HOURS: older usage is deleted); got {hours}.")


def _whole_buckets(step: int) -> None:
    bucket_s = current_settings().usage_bucket_s
    if step % bucket_s:
        raise ValidationError(f"Send a multiple of {bucket_s} (INFER_USAGE_BUCKET_S, the stored buckets); got {step}.")


class AccountUsageQuery(Schema):
    hours = fields.Integer(validate=[validate.Range(min=1), _within_retention], metadata={
        "description": f"The window: the last N hours (default {DEFAULT_HOURS}, at most "
                       "INFER_USAGE_RETENTION_HOURS, 168 unless the operator changed it)."})
    step = fields.Integer(validate=[validate.Range(min=1), _whole_buckets], metadata={
        "description": "Seconds per bucket in the answer, a multiple of INFER_USAGE_BUCKET_S (the stored "
                       "buckets, 300 s by default), which is also the default."})


class AccountUsageFigures(Schema):
    task = fields.String()
    model = fields.String(metadata={"description": "As the requests named it; the task's default name when "
                                                   "they named none."})
    requests = fields.Integer()
    errors = fields.Integer(metadata={"description": "Requests answered with a status of 400 or more."})
    mean_latency_ms = fields.Float(allow_none=True, metadata={
        "description": "Arrival to answer (to the last event of a stream), over all the requests, errors too."})
    max_latency_ms = fields.Float()


class AccountUsageBucket(AccountUsageFigures):
    start = fields.String(metadata={"description": "The bucket's start (UTC); it lasts step_seconds."})


class AccountUsage(Schema):
    hours = fields.Integer()
    since = fields.String(metadata={"description": "The first bucket's start (UTC)."})
    step_seconds = fields.Integer(metadata={"description": "How long each bucket lasts."})
    buckets = fields.List(fields.Nested(AccountUsageBucket), metadata={
        "description": "Per bucket, task and model, oldest first; buckets without requests are left out."})
    totals = fields.List(fields.Nested(AccountUsageFigures),
                         metadata={"description": "Per task and model, over the window."})


def iso_seconds(unix_seconds: int) -> str:
    return datetime.fromtimestamp(unix_seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def usage_answer(read: "usage.AccountUsage") -> dict:
    """GET /usage's answer (the web UI's Usage page reads the same)."""
    return {"hours": read.hours, "since": iso_seconds(read.since), "step_seconds": read.step,
            "buckets": [{**bucket, "start": iso_seconds(bucket["start"])} for bucket in read.buckets],
            "totals": read.totals}


@blp.route("")
class UsageResource(MethodView):
    @blp.arguments(AccountUsageQuery, location="query")
    @blp.response(200, AccountUsage)
    def get(self, query):
        """Your requests per task and model, their errors and latency, over the last hours"""
        retention = int(float(current_settings().usage_retention_hours))
        hours = query.get("hours") or min(DEFAULT_HOURS, max(1, retention))
        return usage_answer(usage.read(api_context(), hours, query.get("step")))
