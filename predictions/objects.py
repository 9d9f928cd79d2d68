"""The prediction object, as GET /predictions/{id} answers it and a webhook carries it."""

from core.tables import Prediction
from core.times import as_utc, iso_time

FINISHED = ("succeeded", "failed", "cancelled")


def _seconds(start, end) -> float | None:
    if start is None or end is None:
        return None
    return round((as_utc(end) - as_utc(start)).total_seconds(), 4)


def prediction_object(row: Prediction) -> dict:
    return {
        "id": row.id,
        "status": row.status,
        "model": row.model,
        "task": row.task,
        "created_at": iso_time(row.created_at),
        "started_at": iso_time(row.started_at),
        "completed_at": iso_time(row.completed_at),
        "output": row.output,
        "error": row.error,
        "metrics": {"queue_seconds": _seconds(row.created_at, row.started_at),
                    "predict_seconds": row.predict_seconds},
        "webhook": row.webhook,
        "webhook_status": row.webhook_status,
    }
