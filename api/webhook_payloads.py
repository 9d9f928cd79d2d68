"""The body of a training job's, build's, batch's or evaluation's webhook: the
object as its GET answers it. The delivery pool (predictions/event_webhooks.py)
runs below the API layer and is handed `payload_of` by the app; it runs on the
pool's thread, in an app context of its own."""

from collections.abc import Callable

from flask import Flask

from api.batches import batch_object
from api.evaluations import evaluation_object
from api.jobs import job_object
from api.versions import version_summary
from core.tables import Batch, Evaluation, ModelVersion, TrainingJob, UserModel

# event -> (session, object id) -> the object, or None when it is gone.
PAYLOADS: dict[str, Callable] = {}


def _training_job(session, object_id: str) -> dict | None:
    job = session.get(TrainingJob, object_id)
    return None if job is None else job_object(job)


def _build(session, object_id: str) -> dict | None:
    version = session.get(ModelVersion, int(object_id))
    if version is None:
        return None
    model = session.get(UserModel, version.model_id)
    return {"object": "model.version", "model": model.name,
            **version_summary(version, model.current_version_id)}


def _batch(session, object_id: str) -> dict | None:
    row = session.get(Batch, object_id)
    return None if row is None else batch_object(row)


def _evaluation(session, object_id: str) -> dict | None:
    row = session.get(Evaluation, object_id)
    return None if row is None else evaluation_object(row)


PAYLOADS.update(training_job=_training_job, build=_build, batch=_batch, evaluation=_evaluation)


def payload_of(app: Flask, event: str, object_id: str) -> dict | None:
    make = PAYLOADS.get(event)
    if make is None:
        return None
    with app.app_context(), app.extensions["db"].sessions() as session:
        return app.json.loads(app.json.dumps(make(session, object_id)))  # as the view would send it
