"""POST /models/{name}/versions/{n}/evaluate, /evaluations and
/models/{name}/compare: run a version on a dataset, follow and cancel it, and
compare versions by their metrics on the same dataset.

The views read the request and shape the answer; services/evaluations.py
checks what an evaluation could fail on before it starts and queues it.
"""

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate

from core.pages import newest_first_page
from core.tables import Evaluation
from api.webhook_urls import check_webhook
from core.times import iso_time
from services import evaluations
from services.evaluations import ACTIVE, FINISHED
from tasks.common import StrictSchema
from web.blueprint import Blueprint
from web.database import session
from web.service_context import api_context

blp = Blueprint("evaluations", __name__, description="Evaluations: run a version of your model on your dataset "
                                                     "and score it; compare versions.")


class EvaluateBody(StrictSchema):
    dataset_id = fields.String(required=True, metadata={
        "description": "One of your ready datasets, of a format of the version's task: text-label "
                       "(text-classification), image-folders (image-classification), tabular, scored-pairs, "
                       "text-pairs or text-triplets (text-vectorisation)."})
    dataset_revision = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1), metadata={
        "description": "The dataset's revision to evaluate on (GET /datasets/{id}/revisions); left out: its latest."})
    webhook = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A URL called once when the evaluation ends, with the evaluation object, signed like "
                       "prediction webhooks (X-Infer-Signature, GET /webhook-secret)."})


class EvaluationsQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(ACTIVE + FINISHED))
    model = fields.String(load_default=None)
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    after = fields.String(load_default=None, metadata={
        "description": "The id of the last evaluation of the previous page."})


class VersionNumbers(fields.String):
    """"1,2,3" -> [1, 2, 3]."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            numbers = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ValidationError("Send version numbers separated by commas, such as 1,2.") from None
        if not numbers:
            raise ValidationError("Send version numbers separated by commas, such as 1,2.")
        return numbers


class CompareQuery(Schema):
    versions = VersionNumbers(required=True, metadata={
        "description": "Version numbers separated by commas; the differences are against the first."})
    dataset_id = fields.String(required=True)
    dataset_revision = fields.Integer(load_default=None, validate=validate.Range(min=1), metadata={
        "description": "Only evaluations on this revision of the dataset; left out: each version's latest on any."})


class EvaluationObject(Schema):
    id = fields.String()
    object = fields.String(metadata={"description": "evaluation"})
    model = fields.String()
    version = fields.Integer()
    task = fields.String()
    dataset_id = fields.String()
    dataset_revision = fields.Integer(allow_none=True, metadata={"description": "The dataset's revision it read."})
    dataset_format = fields.String()
    status = fields.String(metadata={"description": "queued, running, succeeded, failed or cancelled"})
    message = fields.String()
    rows_total = fields.Integer(allow_none=True, metadata={"description": "The dataset's rows (once it runs)."})
    rows_done = fields.Integer(metadata={"description": "Rows sent and answered or failed so far."})
    rows_failed = fields.Integer(metadata={"description": "Rows the version failed on: left out of the metrics."})
    failures = fields.List(fields.Dict(), metadata={"description": "The first 20 failed rows: row (1-based, in the "
                                                                   "dataset's parsed rows), status (the answer's; 0: "
                                                                   "the row could not be read), message."})
    metrics = fields.Dict(allow_none=True, metadata={"description": (
        "Once it succeeded, by task: classification: accuracy, macro_f1, per_class, confusion_matrix (rows: true "
        "label, columns: predicted, in its `labels` order); tabular numbers: r2, mae, mse; scored-pairs: spearman, "
        "pearson (cosine similarity vs the gold score); text-pairs and triplets: accuracy_at_1, recall_at_5, "
        "recall_at_10, mrr (and triplet_accuracy); prompt-completion: perplexity, loss (mean NLL of the completions' "
        "tokens), tokens; with rows, rows_answered, rows_failed.")})
    attempts = fields.Integer()
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    webhook = fields.String(allow_none=True, metadata={"description": "Called when it ends, if sent."})


class EvaluationList(Schema):
    object = fields.String()
    data = fields.List(fields.Nested(EvaluationObject))
    has_more = fields.Boolean()


class ComparedVersion(Schema):
    version = fields.Integer()
    evaluation = fields.Nested(EvaluationObject, allow_none=True, metadata={
        "description": "Its latest succeeded evaluation on the dataset; null if it has none."})


class ComparedMetric(Schema):
    metric = fields.String(metadata={"description": "accuracy, macro_f1, per_class.<label>.f1, r2, spearman..."})
    values = fields.List(fields.Float(allow_none=True), metadata={"description": "One per version, in order."})
    differences = fields.List(fields.Float(allow_none=True), metadata={
        "description": "Each value minus the first version's (null where either is missing)."})


class Comparison(Schema):
    object = fields.String(metadata={"description": "comparison"})
    model = fields.String()
    dataset_id = fields.String()
    dataset_revision = fields.Integer(allow_none=True, metadata={"description": "The revision asked for, if one was."})
    baseline = fields.Integer(metadata={"description": "The version the differences are taken against."})
    versions = fields.List(fields.Nested(ComparedVersion))
    table = fields.List(fields.Nested(ComparedMetric))


def evaluation_object(evaluation: Evaluation) -> dict:
    return {
        "id": evaluation.id, "object": "evaluation", "model": evaluation.model_name,
        "version": evaluation.version_number, "task": evaluation.task, "dataset_id": evaluation.dataset_id,
        "dataset_revision": evaluation.dataset_revision, "dataset_format": evaluation.dataset_format,
        "status": evaluation.status, "message": evaluation.message,
        "rows_total": evaluation.rows_total, "rows_done": evaluation.rows_done or 0,
        "rows_failed": evaluation.rows_failed or 0, "failures": list(evaluation.failures or []),
        "metrics": evaluation.metrics, "attempts": evaluation.attempts or 0,
        "created_at": iso_time(evaluation.created_at), "started_at": iso_time(evaluation.started_at),
        "finished_at": iso_time(evaluation.finished_at), "webhook": evaluation.webhook,
    }


def comparison_object(compared: dict) -> dict:
    return {**compared, "object": "comparison",
            "versions": [{"version": entry["version"],
                          "evaluation": evaluation_object(entry["evaluation"]) if entry["evaluation"] else None}
                         for entry in compared["versions"]]}


@blp.route("/models/<string:name>/versions/<int:number>/evaluate")
class Evaluate(MethodView):
    @blp.arguments(EvaluateBody)
    @blp.response(202, EvaluationObject)
    def post(self, body, name, number):
        """Evaluate version N of your model on one of your datasets: a background run storing the task's metrics"""
        check_webhook(body.get("webhook"))
        evaluation = evaluations.start(api_context(), name, number, body["dataset_id"], body["dataset_revision"],
                                       body.get("webhook"))
        return evaluation_object(evaluation), 202, {"Location": f"/evaluations/{evaluation.id}"}


@blp.route("/models/<string:name>/versions/<int:number>/evaluations")
class VersionEvaluations(MethodView):
    @blp.response(200, EvaluationObject(many=True))
    def get(self, name, number):
        """The evaluations of version N of your model, newest first"""
        return [evaluation_object(evaluation) for evaluation in evaluations.of_version(api_context(), name, number)]


@blp.route("/models/<string:name>/compare")
class Compare(MethodView):
    @blp.arguments(CompareQuery, location="query")
    @blp.response(200, Comparison)
    def get(self, query, name):
        """Versions side by side: each one's latest succeeded evaluation on a dataset, and the differences"""
        return comparison_object(evaluations.compare(api_context(), name, query["versions"], query["dataset_id"],
                                                     query.get("dataset_revision")))


@blp.route("/evaluations")
class Evaluations(MethodView):
    @blp.arguments(EvaluationsQuery, location="query")
    @blp.response(200, EvaluationList)
    def get(self, query):
        """Your evaluations, newest first, a page at a time (after: the last id of the previous page)"""
        statement, after = evaluations.listing(api_context(), query["status"], query["model"], query["after"])
        return newest_first_page(session(), statement, Evaluation, after, query["limit"], evaluation_object)


@blp.route("/evaluations/<string:evaluation_id>")
class EvaluationResource(MethodView):
    @blp.response(200, EvaluationObject)
    def get(self, evaluation_id):
        """One of your evaluations: its state, progress and metrics"""
        return evaluation_object(evaluations.get(api_context(), evaluation_id))


@blp.route("/evaluations/<string:evaluation_id>/cancel")
class CancelEvaluation(MethodView):
    @blp.response(200, EvaluationObject)
    def post(self, evaluation_id):
        """Cancel a queued or running evaluation (a running one stops after the chunk it is sending)"""
        return evaluation_object(evaluations.cancel(api_context(), evaluation_id))
