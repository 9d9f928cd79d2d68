"""Asynchronous predictions: any task endpoint (the built-in tasks, /custom,
/predict, the /v1 routes) sent with the header `Prefer: respond-async` (RFC 7240)
answers 202 with a prediction object and a Location to poll, instead of the
answer. Without the header nothing changes.

The request is checked against the endpoint's own schema before it is queued,
so a malformed one is refused at once with the same 4xx the synchronous call
gives; what only running it can tell (an unknown model, a model that fails) ends
the prediction as `failed`, with the synchronous call's error body as `error`.
An optional `webhook` field in the body is called once when it ends
(predictions/webhooks.py).
"""

import copy
import secrets
import time

from flask import current_app, jsonify, request
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate

from core.errors import BadRequest
from core.pages import newest_first_page
from core.request_context import current_request_id
from core.tables import Prediction
from openai_api.common import ENDPOINTS_FOR_TASK
from predictions.objects import FINISHED, prediction_object
from services import predictions as predictions_service
from tasks.spec import TASK_SPECS
from web.auth import current_account_id
from web.blueprint import Blueprint
from web.database import session
from web.errors import validation_error
from web.service_context import api_context

from api.webhook_urls import check_webhook

blp = Blueprint("predictions", __name__, description="Asynchronous predictions: send any task request with the "
                "header `Prefer: respond-async` to get one of these instead of the answer, then poll it.")

PREFER_ASYNC = "respond-async"


class PredictionObject(Schema):
    id = fields.String()
    status = fields.String(metadata={"description": "queued, running, succeeded, failed or cancelled"})
    model = fields.String()
    task = fields.String()
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    completed_at = fields.String(allow_none=True)
    output = fields.Raw(allow_none=True, metadata={"description": "The synchronous call's answer, once succeeded."})
    error = fields.Raw(allow_none=True, metadata={"description": "The synchronous call's error body, once failed."})
    metrics = fields.Dict(metadata={"description": "queue_seconds (created to started), predict_seconds"})
    webhook = fields.String(allow_none=True)
    webhook_status = fields.String(allow_none=True, metadata={"description": "pending, delivered or failed"})


class PredictionList(Schema):
    object = fields.String()
    data = fields.List(fields.Nested(PredictionObject))
    has_more = fields.Boolean()


class PredictionsQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(("queued", "running") + FINISHED))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    after = fields.String(load_default=None, metadata={"description": "The id of the last prediction of the "
                                                                      "previous page."})


class WebhookSecret(Schema):
    secret = fields.String(metadata={"description": "Verify each webhook call: its X-Infer-Signature header is "
                                                    "sha256=<hex HMAC-SHA256 of the raw body with this secret>."})


# --- the Prefer: respond-async hook ------------------------------------------------

def _async_targets(app) -> dict:
    """endpoint -> (task, request schema) of every route that may answer asynchronously."""
    task_of_path = {spec.path: spec.name for spec in TASK_SPECS.values()}
    task_of_path.update({path: task for task, paths in ENDPOINTS_FOR_TASK.items() for path in paths})
    targets = {}
    for rule in app.url_map.iter_rules():
        task = task_of_path.get(rule.rule)
        if task is None or "POST" not in rule.methods:
            continue
        view = app.view_functions[rule.endpoint]
        method = getattr(getattr(view, "view_class", None), "post", view)
        parameters = getattr(method, "_apidoc", {}).get("arguments", {}).get("parameters", [])
        schemas = [p["schema"] for p in parameters if (p.get("location") or p.get("in")) == "json"]
        targets[rule.endpoint] = (task, schemas[0] if schemas else None)
    return targets


def wants_async(prefer: str) -> bool:
    return any(token.split("=")[0].strip().lower() == PREFER_ASYNC for token in prefer.split(","))


def respond_async():
    """before_request hook: queue the request as a prediction when it asks to be."""
    if request.method != "POST":
        return None
    target = current_app.extensions["async_targets"].get(request.endpoint)
    if target is None or not wants_async(request.headers.get("Prefer", "")):
        return None
    task, schema = target
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise BadRequest("The request body is not a JSON object. Send the task's JSON object.")
    webhook = body.pop("webhook", None)
    if body.get("stream"):
        raise BadRequest("stream cannot be combined with Prefer: respond-async: leave one out.")
    if schema is not None:
        try:
            schema().load(body)
        except ValidationError as exc:
            raise validation_error(exc.messages) from None
    check_webhook(webhook)
    account_id = current_account_id()
    db_session = session()
    predictions_service.check_room(api_context())
    row = Prediction(id="pred_" + secrets.token_hex(8), seq=time.time_ns(), account_id=account_id, task=task,
                     model=str(body.get("model") or ""), path=request.path, input=body,
                     request_id=current_request_id.get() or "", webhook=webhook)
    db_session.add(row)
    db_session.commit()
    current_app.extensions["work"].submit("predict", row.id)
    response = jsonify(prediction_object(row))
    response.status_code = 202
    response.headers["Location"] = f"/predictions/{row.id}"
    response.headers["Preference-Applied"] = PREFER_ASYNC
    return response


PREFER_PARAMETER = {
    "in": "header", "name": "Prefer", "required": False, "schema": {"type": "string"},
    "description": "`respond-async`: answer 202 with a prediction to poll at GET /predictions/{id} instead of "
                   "the answer (the body may then carry a `webhook` URL, called when it ends).",
}


def init_app(app, api) -> None:
    """After every blueprint is registered: the routes are read from the app."""
    app.extensions["async_targets"] = targets = _async_targets(app)
    app.before_request(respond_async)
    # The hook answers for routes whose views never see the header: say so in
    # their documentation. apispec has no public way to amend a registered path.
    paths = api.spec._paths
    for rule in app.url_map.iter_rules():
        if rule.endpoint in targets and rule.rule in paths:
            operation = paths[rule.rule]["post"]
            operation.setdefault("parameters", []).append(copy.deepcopy(PREFER_PARAMETER))
            operation["responses"]["202"] = {
                "description": "Prefer: respond-async: the prediction, queued (Location: /predictions/{id})",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionObject"}}},
            }


# --- the predictions resource (services/predictions.py) -------------------------------

@blp.route("/predictions")
class Predictions(MethodView):
    @blp.arguments(PredictionsQuery, location="query")
    @blp.response(200, PredictionList)
    def get(self, query):
        """Your predictions, newest first, a page at a time (after: the last id of the previous page)"""
        statement, after = predictions_service.listing(api_context(), query["status"], query["after"])
        return newest_first_page(session(), statement, Prediction, after, query["limit"], prediction_object)


@blp.route("/predictions/<string:prediction_id>")
class PredictionResource(MethodView):
    @blp.response(200, PredictionObject)
    def get(self, prediction_id):
        """One prediction: its status, and its output or error once it has ended"""
        return prediction_object(predictions_service.get(api_context(), prediction_id))


@blp.route("/predictions/<string:prediction_id>/cancel")
class CancelPrediction(MethodView):
    @blp.response(200, PredictionObject)
    def post(self, prediction_id):
        """Cancel a prediction: a queued one never runs; a running one's answer is dropped. An ended one stays as it is"""
        return prediction_object(predictions_service.cancel(api_context(), prediction_id))


@blp.route("/webhook-secret")
class WebhookSecretResource(MethodView):
    @blp.response(200, WebhookSecret)
    def get(self):
        """The secret that signs your webhook calls"""
        return {"secret": predictions_service.webhook_secret(api_context())}


@blp.route("/webhook-secret/rotate")
class RotateWebhookSecret(MethodView):
    @blp.response(200, WebhookSecret)
    def post(self):
        """Replace the secret that signs your webhook calls (calls from then on use the new one)"""
        return {"secret": predictions_service.rotate_webhook_secret(api_context())}
