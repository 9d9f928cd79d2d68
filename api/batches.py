"""POST /batches and /batches/{id}: batch predictions over a file of requests or
a dataset, in OpenAI's Batch API shape (services/batches.py checks and queues a
batch; predictions/batches.py runs it)."""

from flask import Response, request
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.webhook_urls import check_webhook
from core.errors import InvalidInput, PayloadTooLarge
from core.pages import newest_first_page
from core.tables import Batch
from core.times import iso_time
from predictions.batches import FINISHED
from services import batches
from services.batches import ACTIVE
from tasks.common import StrictSchema
from web.blueprint import Blueprint
from web.database import session
from web.service_context import api_context
from web.settings import current_settings

blp = Blueprint("batches", __name__, description="Batch predictions: run a file of task requests, or a task over "
                "every row of a dataset, in the background; read one answer per line when it ends.")

# What a multipart form may take beside the file (its boundaries and headers).
FORM_OVERHEAD_BYTES = 64 * 1024


class BatchBody(StrictSchema):
    dataset_id = fields.String(load_default=None, allow_none=True, metadata={
        "description": "Run `endpoint` on every row of this dataset of yours (text rows: each row's text is the "
                       "request's `text`). Or send a multipart/form-data `file` of JSONL requests instead."})
    endpoint = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 200), metadata={
        "description": "With dataset_id: the task endpoint, such as /text-vectorisation or /text-classification."})
    model = fields.String(load_default=None, allow_none=True, metadata={"description": "With dataset_id: the "
                                                                                        "model every request names."})
    params = fields.Dict(load_default=dict, metadata={"description": "With dataset_id: the rest of each request's "
                                                                     "body (labels, options...)."})
    webhook = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A URL called once when the batch ends (completed, failed or cancelled) with the batch "
                       "object, signed like prediction webhooks (X-Infer-Signature, GET /webhook-secret)."})
    metadata = fields.Dict(load_default=dict, metadata={"description": "Yours to keep with the batch."})

    @validates_schema
    def dataset_needs_endpoint(self, data, **kwargs):
        if data.get("dataset_id") and not data.get("endpoint"):
            raise ValidationError("Send the endpoint to run on the dataset's rows.", "endpoint")


class RequestCounts(Schema):
    total = fields.Integer()
    completed = fields.Integer(metadata={"description": "Lines answered with a 2xx."})
    failed = fields.Integer(metadata={"description": "Lines answered with an error."})


class BatchObject(Schema):
    id = fields.String()
    object = fields.String(metadata={"description": "batch"})
    endpoint = fields.String(metadata={"description": "The endpoint every line names; empty when they name several."})
    dataset_id = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "queued, running, completed, failed or cancelled"})
    message = fields.String()
    request_counts = fields.Nested(RequestCounts)
    output_url = fields.String(metadata={"description": "GET it for the JSONL answers: one line per request line, "
                                                        "in order (those answered so far while it runs)."})
    metadata = fields.Dict()
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    completed_at = fields.String(allow_none=True)
    webhook = fields.String(allow_none=True)


class BatchList(Schema):
    object = fields.String()
    data = fields.List(fields.Nested(BatchObject))
    has_more = fields.Boolean()


class BatchesQuery(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(ACTIVE + FINISHED))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    after = fields.String(load_default=None, metadata={"description": "The id of the last batch of the previous "
                                                                      "page."})


def batch_object(row: Batch) -> dict:
    done, failed = row.done_lines or 0, row.failed_lines or 0
    return {
        "id": row.id, "object": "batch", "endpoint": row.endpoint, "dataset_id": row.dataset_id,
        "status": row.status, "message": row.message,
        "request_counts": {"total": row.total_lines, "completed": done - failed, "failed": failed},
        "output_url": f"/batches/{row.id}/output", "metadata": row.metadata_ or {},
        "created_at": iso_time(row.created_at), "started_at": iso_time(row.started_at),
        "completed_at": iso_time(row.completed_at), "webhook": row.webhook,
    }


@blp.before_request
def allow_batch_files():
    # A batch's file is larger than a task request: its body has its own limit.
    if request.endpoint == "batches.Batches" and request.method == "POST":
        request.max_content_length = current_settings().batch_max_input_bytes + FORM_OVERHEAD_BYTES
        request.body_limit_setting = "INFER_BATCH_MAX_INPUT_BYTES"


def _read_body() -> tuple[dict, object]:
    """The fields (a JSON body, or a multipart form's) and the multipart file, if any."""
    if request.mimetype == "multipart/form-data":
        return blp.ARGUMENTS_PARSER.parse(BatchBody(), request, location="form"), request.files.get("file")
    return blp.ARGUMENTS_PARSER.parse(BatchBody(), request, location="json"), None


@blp.route("/batches")
class Batches(MethodView):
    @blp.doc(requestBody={"required": True, "content": {
        "application/json": {"schema": BatchBody},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary", "description": "JSONL: one request a line, "
                     "{\"custom_id\", \"method\": \"POST\", \"url\": \"/text-classification\", \"body\": {...}}"},
            "webhook": {"type": "string"}}}}}})
    @blp.response(202, BatchObject)
    def post(self):
        """Start a batch: a JSONL file of requests (multipart `file`), or an endpoint run on every row of a dataset"""
        body, upload = _read_body()
        webhook = check_webhook(body["webhook"])
        ctx = api_context()
        if upload is not None:
            if body["dataset_id"]:
                raise InvalidInput("Invalid request. Send a file or a dataset_id, not both.",
                                   errors={"dataset_id": ["Not with a file."]})
            limit = current_settings().batch_max_input_bytes
            data = upload.stream.read(limit + 1)
            if len(data) > limit:
                raise PayloadTooLarge(f"The file is over {limit} bytes (INFER_BATCH_MAX_INPUT_BYTES). Split it into "
                                      "several batches.")
            row = batches.create_from_file(ctx, data, webhook, body["metadata"])
        elif body["dataset_id"]:
            row = batches.create_from_dataset(ctx, body["dataset_id"], body["endpoint"], body["model"],
                                              body["params"], webhook, body["metadata"])
        else:
            raise InvalidInput("Invalid request. Send a multipart/form-data `file` of JSONL requests, or a "
                               "dataset_id and an endpoint.", errors={"file": ["Missing."]})
        return batch_object(row), 202, {"Location": f"/batches/{row.id}"}

    @blp.arguments(BatchesQuery, location="query")
    @blp.response(200, BatchList)
    def get(self, query):
        """Your batches, newest first, a page at a time (after: the last id of the previous page)"""
        statement, after = batches.listing(api_context(), query["status"], query["after"])
        return newest_first_page(session(), statement, Batch, after, query["limit"], batch_object)


@blp.route("/batches/<string:batch_id>")
class BatchResource(MethodView):
    @blp.response(200, BatchObject)
    def get(self, batch_id):
        """One batch: its status and request counts"""
        return batch_object(batches.get(api_context(), batch_id))


@blp.route("/batches/<string:batch_id>/cancel")
class CancelBatch(MethodView):
    @blp.response(200, BatchObject)
    def post(self, batch_id):
        """Cancel a batch: a queued one never runs; a running one stops after the lines in flight (its output keeps those answered)"""
        return batch_object(batches.cancel(api_context(), batch_id))


@blp.route("/batches/<string:batch_id>/output")
class BatchOutput(MethodView):
    @blp.response(200, description="JSONL: {\"id\", \"custom_id\", \"response\": {\"status_code\", \"body\"} | null, "
                  "\"error\": null | {\"code\", \"message\"}} per request line, in the input's order.")
    def get(self, batch_id):
        """The batch's answers, one JSONL line per request line in order: all of them once it has completed"""
        return output_response(*batches.output_file(api_context(), batch_id))


def output_response(path: str, length: int) -> Response:
    """The first `length` bytes of an output file, streamed as JSONL (the web UI's download sends the same)."""

    def stream():
        if not length:
            return
        with open(path, "rb") as source:
            left = length
            while left > 0:
                piece = source.read(min(left, 1 << 16))
                if not piece:
                    return
                left -= len(piece)
                yield piece

    return Response(stream(), mimetype="application/jsonl", headers={"Content-Length": str(length)})
