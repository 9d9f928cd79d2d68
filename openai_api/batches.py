"""OpenAI's Batch API: /v1/files (purpose "batch") and /v1/batches, over the
service's own batches (services/batches.py, services/files.py), so OpenAI's SDKs
run batches here by changing their base URL:

    file = client.files.create(file=open("requests.jsonl", "rb"), purpose="batch")
    batch = client.batches.create(input_file_id=file.id, endpoint="/v1/embeddings", completion_window="24h")
    ... client.batches.retrieve(batch.id).status == "completed" ...
    client.files.content(batch.output_file_id).text

Differences, said in docs/user-guide/batches.md: the lines may name any task
endpoint, not only `endpoint`; failed lines are in the output file with their
error (error_file_id stays null); completion_window is taken and not enforced.
"""

from flask import Response, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from core.errors import InvalidInput, PayloadTooLarge
from core.pages import newest_first_page
from core.tables import Batch
from services import batches, files
from tasks.common import StrictSchema
from web.blueprint import Blueprint
from web.database import session
from web.service_context import api_context
from web.settings import current_settings

from .common import unix_time
from .errors import documented_errors

blp = Blueprint("openai-batches", __name__, url_prefix="/v1",
                description="OpenAI-compatible: files and batches (OpenAI's Batch API) over the service's batches.")

# Our statuses as OpenAI names them (a running batch asked to stop is "cancelling").
STATUS = {"queued": "validating", "running": "in_progress", "completed": "completed", "failed": "failed",
          "cancelled": "cancelled"}
FORM_OVERHEAD_BYTES = 64 * 1024


class OpenAIFile(Schema):
    id = fields.String()
    object = fields.String(metadata={"description": "Always file."})
    bytes = fields.Integer()
    created_at = fields.Integer()
    filename = fields.String()
    purpose = fields.String(metadata={"description": "batch, or batch_output for a batch's output."})
    status = fields.String()


class OpenAIFileList(Schema):
    object = fields.String()
    data = fields.List(fields.Nested(OpenAIFile))


class DeletedFile(Schema):
    id = fields.String()
    object = fields.String()
    deleted = fields.Boolean()


class NoBody(StrictSchema):
    """What a POST without a body takes: nothing, but a body that is not JSON is a 400 as on every /v1 POST."""


class OpenAIBatchBody(StrictSchema):
    input_file_id = fields.String(required=True)
    endpoint = fields.String(required=True, validate=validate.Length(1, 200), metadata={
        "description": "/v1/embeddings, /v1/chat/completions, /v1/completions, or any task endpoint."})
    completion_window = fields.String(load_default="24h", metadata={"description": "Taken, not enforced."})
    metadata = fields.Dict(load_default=dict, allow_none=True)


class OpenAIBatch(Schema):
    id = fields.String()
    object = fields.String()
    endpoint = fields.String()
    errors = fields.Raw(allow_none=True)
    input_file_id = fields.String(allow_none=True)
    completion_window = fields.String()
    status = fields.String(metadata={"description": "validating (queued), in_progress, cancelling, completed, "
                                                    "failed or cancelled"})
    output_file_id = fields.String(allow_none=True)
    error_file_id = fields.String(allow_none=True)
    created_at = fields.Integer()
    in_progress_at = fields.Integer(allow_none=True)
    completed_at = fields.Integer(allow_none=True)
    failed_at = fields.Integer(allow_none=True)
    cancelled_at = fields.Integer(allow_none=True)
    request_counts = fields.Dict()
    metadata = fields.Dict(allow_none=True)


class OpenAIBatchList(Schema):
    object = fields.String()
    data = fields.List(fields.Nested(OpenAIBatch))
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)
    has_more = fields.Boolean()


class BatchesQuery(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))
    after = fields.String(load_default=None)


def file_object(row) -> dict:
    if isinstance(row, Batch):  # a batch's output
        return {"id": files.output_file_id(row.id), "object": "file", "bytes": row.output_bytes,
                "created_at": unix_time(row.created_at), "filename": f"{row.id}_output.jsonl",
                "purpose": "batch_output", "status": "processed"}
    return {"id": row.id, "object": "file", "bytes": row.bytes, "created_at": unix_time(row.created_at),
            "filename": row.filename, "purpose": row.purpose, "status": "processed"}


def _at(moment):
    return None if moment is None else unix_time(moment)


def batch_object(row: Batch) -> dict:
    status = STATUS[row.status]
    if status == "in_progress" and row.cancel_requested:
        status = "cancelling"
    done, failed = row.done_lines or 0, row.failed_lines or 0
    ended = row.completed_at
    return {
        "id": row.id, "object": "batch", "endpoint": row.endpoint, "input_file_id": row.input_file_id,
        "errors": {"object": "list", "data": [{"message": row.message}]} if row.status == "failed" else None,
        "completion_window": "24h", "status": status,
        "output_file_id": files.output_file_id(row.id) if row.status != "queued" else None, "error_file_id": None,
        "created_at": unix_time(row.created_at), "in_progress_at": _at(row.started_at),
        "completed_at": _at(ended) if row.status == "completed" else None,
        "failed_at": _at(ended) if row.status == "failed" else None,
        "cancelled_at": _at(ended) if row.status == "cancelled" else None,
        "request_counts": {"total": row.total_lines, "completed": done - failed, "failed": failed},
        "metadata": row.metadata_ or None,
    }


@blp.before_request
def allow_files():
    if request.endpoint == "openai-batches.Files" and request.method == "POST":
        request.max_content_length = current_settings().batch_max_input_bytes + FORM_OVERHEAD_BYTES
        request.body_limit_setting = "INFER_BATCH_MAX_INPUT_BYTES"


@blp.route("/files")
class Files(MethodView):
    @blp.doc(requestBody={"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": {"file": {"type": "string", "format": "binary"},
                                         "purpose": {"type": "string", "enum": list(files.PURPOSES)}}}}}})
    @blp.response(200, OpenAIFile)
    @documented_errors("400")
    def post(self):
        """Upload a JSONL file of requests for a batch (purpose batch)"""
        if request.mimetype != "multipart/form-data":
            blp.ARGUMENTS_PARSER.parse(NoBody, request, location="json")  # a body that is not JSON: 400
        upload = request.files.get("file")
        if upload is None:
            raise InvalidInput("Invalid request. file: send the JSONL file as multipart/form-data.",
                               errors={"file": ["Missing."]}, param="file")
        limit = current_settings().batch_max_input_bytes
        data = upload.stream.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(f"The file is over {limit} bytes (INFER_BATCH_MAX_INPUT_BYTES).")
        return file_object(files.create(api_context(), data, upload.filename or "", request.form.get("purpose", "")))

    @blp.response(200, OpenAIFileList)
    @documented_errors()
    def get(self):
        """Your files"""
        return {"object": "list", "data": [file_object(row) for row in files.listed(api_context())]}


@blp.route("/files/<string:file_id>")
class FileResource(MethodView):
    @blp.response(200, OpenAIFile)
    @documented_errors()
    def get(self, file_id):
        """One of your files, or a batch's output file"""
        return file_object(files.get(api_context(), file_id))

    @blp.response(200, DeletedFile)
    @documented_errors()
    def delete(self, file_id):
        """Delete one of your files (a batch made from it keeps its own copy)"""
        return {"id": files.delete(api_context(), file_id), "object": "file", "deleted": True}


@blp.route("/files/<string:file_id>/content")
class FileContent(MethodView):
    @blp.response(200, description="The file's bytes (JSONL).")
    @documented_errors()
    def get(self, file_id):
        """A file's content: a batch's output is one JSONL line per request line, in order"""
        path, length = files.content(api_context(), file_id)
        with open(path, "rb") as source:
            data = source.read(length) if length else b""
        return Response(data, mimetype="application/jsonl")


@blp.route("/batches")
class Batches(MethodView):
    @blp.arguments(OpenAIBatchBody)
    @blp.response(200, OpenAIBatch)
    @documented_errors("400")
    def post(self, body):
        """Start a batch from an uploaded file (OpenAI's Batch API)"""
        ctx = api_context()
        data = files.read(ctx, body["input_file_id"])
        row = batches.create_from_file(ctx, data, None, body["metadata"] or {}, input_file_id=body["input_file_id"])
        if not row.endpoint:
            row.endpoint = body["endpoint"]  # the lines name several: OpenAI's object names the one asked for
            ctx.db.commit()
        return batch_object(row)

    @blp.arguments(BatchesQuery, location="query")
    @blp.response(200, OpenAIBatchList)
    @documented_errors()
    def get(self, query):
        """Your batches, newest first (after: the last id of the previous page)"""
        statement, after = batches.listing(api_context(), None, query["after"])
        page = newest_first_page(session(), statement, Batch, after, query["limit"], batch_object)
        data = page["data"]
        return {**page, "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@blp.route("/batches/<string:batch_id>")
class BatchResource(MethodView):
    @blp.response(200, OpenAIBatch)
    @documented_errors()
    def get(self, batch_id):
        """One batch"""
        return batch_object(batches.get(api_context(), batch_id))


@blp.route("/batches/<string:batch_id>/cancel")
class CancelBatch(MethodView):
    @blp.arguments(NoBody)
    @blp.response(200, OpenAIBatch)
    @documented_errors("400")
    def post(self, _body, batch_id):
        """Cancel a batch"""
        return batch_object(batches.cancel(api_context(), batch_id))

