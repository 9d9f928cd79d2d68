"""Private prediction URLs (OneClick's model URL): POST /models/{name}/prediction-url
makes a secret URL for one model and one task; GET <url>?feature=value&... or
POST <url> (JSON, or multipart with an image file) answers without an API key.

The URL is the credential: only its sha256 is kept (like API keys, shown once),
it answers only its own model and task (a request naming another model is
refused), it can be listed and revoked, and every use is counted and held to
INFER_PREDICTION_URL_RATE_PER_MIN.
"""

import base64
import hashlib
import json
import secrets
import time

from flask import current_app, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import case, select, update

from api.prediction_dispatch import run_as
from core.errors import BadRequest, InvalidInput, NotFound, TooManyRequests
from core.request_context import current_request_id
from core.tables import PredictionUrl, UserModel, owned, utcnow
from core.times import iso_time
from tasks.common import StrictSchema
from tasks.spec import TASK_SPECS
from uploads.user_models import owned_model
from web.auth import current_account_id
from web.blueprint import Blueprint
from web.database import session
from web.service_context import base_url
from web.settings import current_settings

blp = Blueprint("prediction_urls", __name__, description="Private prediction URLs: one model, no API key.")



class CreateBody(StrictSchema):
    task = fields.String(required=True, metadata={"description": "The task the URL answers; one the model serves."})
    version = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1), metadata={
        "description": "Pin a version (the URL calls name@N); left out: whichever version serves."})


class UrlObject(Schema):
    id = fields.String()
    url = fields.String(allow_none=True, metadata={"description": "Only in the answer that creates it: keep it "
                                                                 "secret, it needs no key."})
    prefix = fields.String(metadata={"description": "The URL's first characters, to tell URLs apart."})
    model = fields.String()
    task = fields.String()
    version = fields.Integer(allow_none=True)
    uses = fields.Integer()
    last_used_at = fields.String(allow_none=True)
    created_at = fields.String()
    revoked_at = fields.String(allow_none=True)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def url_object(row: PredictionUrl, model_name: str, url: str | None = None) -> dict:
    return {"id": row.id, "url": url, "prefix": row.prefix, "model": model_name, "task": row.task,
            "version": row.version_number, "uses": row.uses, "last_used_at": iso_time(row.last_used_at),
            "created_at": iso_time(row.created_at), "revoked_at": iso_time(row.revoked_at)}


@blp.route("/models/<string:name>/prediction-url")
class CreateUrl(MethodView):
    @blp.arguments(CreateBody)
    @blp.response(201, UrlObject)
    def post(self, body, name):
        """Make a private URL that answers this model's task without an API key (shown once)"""
        db_session = session()
        model = owned_model(db_session, current_account_id(), name)
        if body["task"] not in (model.tasks or []):
            served = ", ".join(model.tasks or []) or "nothing yet (no successful version)"
            problem = f"model {name!r} serves {served}, not {body['task']!r}."
            raise InvalidInput(f"Invalid request. task: {problem}", errors={"task": [problem]})
        secret = "pk_" + secrets.token_urlsafe(32)
        row = PredictionUrl(id="pu_" + secrets.token_hex(8), account_id=model.account_id, model_id=model.id,
                            task=body["task"], version_number=body["version"], secret_hash=hash_secret(secret),
                            prefix=secret[:10])
        db_session.add(row)
        db_session.commit()
        return url_object(row, name, f"{base_url().rstrip('/')}/p/{secret}"), 201


@blp.route("/models/<string:name>/prediction-urls")
class ListUrls(MethodView):
    @blp.response(200, UrlObject(many=True))
    def get(self, name):
        """The prediction URLs of one of your models (without their secrets), with their use counts"""
        db_session = session()
        model = owned_model(db_session, current_account_id(), name)
        rows = db_session.scalars(select(PredictionUrl).where(PredictionUrl.model_id == model.id)
                                  .order_by(PredictionUrl.created_at)).all()
        return [url_object(row, name) for row in rows]


@blp.route("/prediction-urls/<string:url_id>")
class RevokeUrl(MethodView):
    @blp.response(200, description="null")
    def delete(self, url_id):
        """Revoke a prediction URL: it answers 404 from then on"""
        db_session = session()
        row = owned(db_session, PredictionUrl, url_id, current_account_id())
        if row is None:
            raise NotFound(f"Prediction URL {url_id!r} not found.")
        row.revoked_at = row.revoked_at or utcnow()
        db_session.commit()
        return None


def _query_value(values: list[str], kind: str | None):
    """A query (or form) parameter's value as the JSON body would carry it; `kind` is
    its request field's input_kind (tasks/), "row" for a column of a tabular row."""
    if kind == "row":  # a feature: a number when it reads as one
        try:
            return float(values[-1])
        except ValueError:
            return values[-1]
    if kind == "lines":
        return values if len(values) > 1 else [v for v in values[0].split(",") if v]
    if kind == "text":  # sent as it is, never read as JSON (a text "1" stays "1")
        return values[-1]
    try:  # max_length=20, do_sample=false: what the JSON body would carry
        return json.loads(values[-1])
    except ValueError:
        return values[-1]


def _body_of(spec, values: dict[str, list[str]]) -> dict:
    """The task's body from parameters named as its request fields; for a task that
    takes a row (tabular), every parameter is a column of that row."""
    kinds = {name: getattr(field, "input_kind", None) for name, field in spec.request_fields().items()}
    row_field = next((name for name, kind in kinds.items() if kind == "row"), None)
    if row_field is not None:
        return {row_field: {key: _query_value(v, "row") for key, v in values.items()}}
    return {key: _query_value(v, kinds.get(key)) for key, v in values.items()}


def _input_of_request(spec) -> dict:
    """The task's request body, from the query string (GET) or the body (POST)."""
    if "model" in request.args or "model" in request.form:
        raise BadRequest("A prediction URL answers its own model: leave out \"model\".")
    if request.method == "GET":
        return _body_of(spec, {key: request.args.getlist(key) for key in request.args})
    if request.mimetype == "multipart/form-data":
        body = _body_of(spec, {key: request.form.getlist(key) for key in request.form})
        for key, upload in request.files.items():  # an image file, sent as the JSON API takes it
            body[key] = base64.b64encode(upload.read()).decode()
        return body
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("Send the task's JSON object, multipart form fields, or (GET) query parameters.")
    return body


def _count_use(row_id: str, limit: int) -> bool:
    """Count one use in the current minute; False when the minute's limit is reached."""
    minute = int(time.time() // 60)
    db_session = session()
    counted = db_session.execute(
        update(PredictionUrl)
        .where(PredictionUrl.id == row_id,
               ~((PredictionUrl.window_minute == minute) & (PredictionUrl.window_uses >= limit)))
        .values(uses=PredictionUrl.uses + 1, last_used_at=utcnow(), window_minute=minute,
                window_uses=case((PredictionUrl.window_minute == minute, PredictionUrl.window_uses + 1), else_=1)))
    db_session.commit()
    return counted.rowcount == 1


@blp.route("/p/<string:secret>", methods=["GET", "POST"])
def predict_with_url(secret):
    """A private prediction URL: its secret, not an API key, authorises it."""
    db_session = session()
    row = db_session.scalar(select(PredictionUrl).where(PredictionUrl.secret_hash == hash_secret(secret)))
    if row is None or row.revoked_at is not None:
        raise NotFound("Unknown or revoked prediction URL.")
    model = db_session.get(UserModel, row.model_id)
    spec = TASK_SPECS.get(row.task)
    if model is None or spec is None:
        raise NotFound("Unknown or revoked prediction URL.")
    body = _input_of_request(spec)
    if "model" in body:
        raise BadRequest("A prediction URL answers its own model: leave out \"model\".")
    limit = current_settings().prediction_url_rate_per_min
    if not _count_use(row.id, limit):
        raise TooManyRequests(f"This URL answered {limit} calls this minute (INFER_PREDICTION_URL_RATE_PER_MIN); "
                              "try again in a minute.", headers={"Retry-After": str(60 - int(time.time()) % 60)})
    body["model"] = model.name if row.version_number is None else f"{model.name}@{row.version_number}"
    status, answer = run_as(current_app._get_current_object(), row.account_id, spec.path, body,
                            current_request_id.get())
    return answer, status
