"""/datasets: upload training data, follow its parsing, read its statistics;
edit it sample by sample, each edit a new revision (services/dataset_edits.py).

Small datasets come in the request (JSON "data", or a multipart "file"), up to
INFER_DATASET_MAX_DIRECT_BYTES; larger ones through an upload URL (the same
signed PUT, or S3 presigned PUT, as model zips), up to INFER_DATASET_MAX_BYTES.
Either way the dataset is parsed in the background (training/dataset_parses.py
runs training/datasets/child.py): processing -> ready | failed, with a parse log.
"""

from flask import current_app, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from api.models import receive_signed_upload
from core.tables import Dataset, DatasetRevision
from core.times import iso_time
from services import dataset_edits, datasets
from tasks.common import StrictSchema
from training.datasets import FORMAT_TASKS
from training.paths import dataset_source
from training.records import log_line
from web.blueprint import Blueprint
from web.database import session
from web.service_context import api_context
from web.settings import current_settings

blp = Blueprint("datasets", __name__, description="Training data: upload, parse log, statistics.")


class DatasetBody(StrictSchema):
    name = fields.String(load_default="dataset", validate=validate.Length(1, 200))
    format = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(sorted(FORMAT_TASKS)),
                           metadata={"description": "Left out: detected from the content. " + "; ".join(
                               f"{name} trains {', '.join(tasks)}" for name, tasks in sorted(FORMAT_TASKS.items()))})
    label_column = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 200), metadata={
        "description": "CSV/JSONL: the label's column (default: label, class, category, target or y; tabular: else the last)."})
    text_column = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 200), metadata={
        "description": "CSV/JSONL of text with a label: the text's column (default: text, sentence or content)."})
    data = fields.String(load_default=None, allow_none=True, metadata={
        "description": "The dataset itself (CSV or JSONL text), up to INFER_DATASET_MAX_DIRECT_BYTES. Or send it as "
                       "a multipart/form-data `file` (with these fields as form fields), or ask for an upload URL."})
    upload = fields.Boolean(load_default=False, metadata={
        "description": "true: answer with an upload_url that takes a PUT of the file (CSV, JSONL, or a zip of images "
                       "in one folder per label) for an hour, up to INFER_DATASET_MAX_BYTES."})


class ParseLogLine(Schema):
    timestamp = fields.String()
    message = fields.String()


class DatasetObject(Schema):
    id = fields.String()
    object = fields.String(metadata={"description": "dataset"})
    name = fields.String()
    format = fields.String(metadata={"description": "As sent, or detected once parsed."})
    trains = fields.List(fields.String(), metadata={"description": "The tasks this dataset can train."})
    status = fields.String(metadata={"description": "awaiting_upload, processing, ready or failed"})
    message = fields.String(metadata={"description": "Why it failed, or a summary."})
    size_bytes = fields.Integer()
    stats = fields.Dict(allow_none=True, metadata={"description": (
        "rows, empty_rows, empty_row_lines, bad_rows, bad_row_lines [{line, reason}], labels {label: count}, "
        "input_lengths, and for tabular data columns, label_column, label_kind.")})
    parse_logs = fields.List(fields.Nested(ParseLogLine))
    upload_url = fields.String(allow_none=True, metadata={"description": "Only while awaiting_upload, in the "
                                                                         "answer to POST /datasets."})
    created_at = fields.String()
    finished_at = fields.String(allow_none=True)
    revision = fields.Integer(metadata={"description": "The revision shown (its stats): the latest unless "
                                                       "?revision= asked for another."})
    latest_revision = fields.Integer(metadata={"description": "1 as uploaded, + 1 for each edit."})


def dataset_object(dataset: Dataset, upload_url: str | None = None, revision: DatasetRevision | None = None) -> dict:
    return {
        "id": dataset.id, "object": "dataset", "name": dataset.name, "format": dataset.format,
        "trains": FORMAT_TASKS.get(dataset.format, []), "status": dataset.status, "message": dataset.message,
        "size_bytes": dataset.size_bytes, "stats": dataset.stats if revision is None else revision.stats,
        "parse_logs": list(dataset.parse_log or []), "upload_url": upload_url,
        "created_at": iso_time(dataset.created_at), "finished_at": iso_time(dataset.finished_at),
        "revision": dataset.revision or 1 if revision is None else revision.revision,
        "latest_revision": dataset.revision or 1,
    }


class DatasetQuery(Schema):
    revision = fields.Integer(load_default=None, validate=validate.Range(1), metadata={
        "description": "Show this revision's statistics (default: the latest)."})


class RevisionObject(Schema):
    object = fields.String(metadata={"description": "dataset.revision"})
    dataset_id = fields.String()
    revision = fields.Integer()
    change = fields.Dict(metadata={"description": "kind (upload, add, remove, remove-class), added, removed, and "
                                                  "label for a class removed."})
    stats = fields.Dict(allow_none=True, metadata={"description": "As the dataset's: rows, labels, input_lengths..."})
    created_at = fields.String()
    sample_ids = fields.List(fields.String(), metadata={
        "description": "Only in the answer to adding samples: the ids given to them, in the order sent."})


def revision_object(revision: DatasetRevision, sample_ids: list | None = None) -> dict:
    answer = {"object": "dataset.revision", "dataset_id": revision.dataset_id, "revision": revision.revision,
              "change": revision.change, "stats": revision.stats, "created_at": iso_time(revision.created_at)}
    if sample_ids is not None:
        answer["sample_ids"] = sample_ids
    return answer


class AddSamplesBody(StrictSchema):
    samples = fields.List(fields.Dict(), required=True, metadata={"description": (
        "Rows in the dataset's format: text-label {text, label}; text-pairs {anchor, positive}; text-triplets "
        "{anchor, positive, negative}; scored-pairs {sentence1, sentence2, score}; prompt-completion {prompt, "
        "completion}; chat {messages}; tabular {features: {column: value}, label}; image-folders {label, image "
        "(base64) or image_url}. Each may carry a uid of yours. A new label makes a new class. At most "
        "INFER_DATASET_EDIT_MAX_SAMPLES.")})


class RemoveSamplesBody(StrictSchema):
    ids = fields.List(fields.String(), load_default=list, metadata={"description": "Sample ids (GET .../samples)."})
    uids = fields.List(fields.String(), load_default=list, metadata={"description": "Your own uids of samples."})


class SamplesQuery(Schema):
    revision = fields.Integer(load_default=None, validate=validate.Range(1), metadata={
        "description": "The revision to read (default: the latest)."})
    offset = fields.Integer(load_default=0, validate=validate.Range(0))
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))


class SamplesPage(Schema):
    object = fields.String(metadata={"description": "list"})
    dataset_id = fields.String()
    revision = fields.Integer()
    total = fields.Integer(metadata={"description": "Samples in the revision."})
    offset = fields.Integer()
    data = fields.List(fields.Dict(), metadata={"description": "The rows, each with its id (and uid, if given)."})


@blp.before_request
def allow_dataset_bodies():
    # Datasets are larger than task requests: their body has its own limit.
    if request.endpoint in ("datasets.Datasets", "datasets.Samples") and request.method == "POST":
        request.max_content_length = current_settings().dataset_max_direct_bytes
        request.body_limit_setting = "INFER_DATASET_MAX_DIRECT_BYTES (or ask for an upload URL: \"upload\": true)"


def _read_body() -> tuple[dict, object]:
    """The fields (a JSON body, or a multipart form's) and the multipart file, if
    any, read and checked as every other endpoint's (the same 400s and 422s)."""
    if request.mimetype == "multipart/form-data":
        return blp.ARGUMENTS_PARSER.parse(DatasetBody(), request, location="form"), request.files.get("file")
    return blp.ARGUMENTS_PARSER.parse(DatasetBody(), request, location="json"), None


@blp.route("/datasets")
class Datasets(MethodView):
    @blp.doc(requestBody={"required": True, "content": {
        "application/json": {"schema": DatasetBody},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}, "name": {"type": "string"},
            "format": {"type": "string"}, "label_column": {"type": "string"}, "text_column": {"type": "string"}}}}}})
    @blp.response(201, DatasetObject)
    def post(self):
        """Create a dataset from the request's data or file, or get an upload URL for a large one"""
        body, upload = _read_body()
        dataset, upload_url = datasets.create(api_context(), body, data=body["data"],
                                              file=None if upload is None else upload.stream,
                                              upload=body["upload"])
        return dataset_object(dataset, upload_url), 201

    @blp.response(200, DatasetObject(many=True))
    def get(self):
        """Your datasets, newest first"""
        return [dataset_object(dataset) for dataset in datasets.listed(api_context())]


@blp.route("/datasets/<string:dataset_id>")
class DatasetResource(MethodView):
    @blp.arguments(DatasetQuery, location="query")
    @blp.response(200, DatasetObject)
    def get(self, query, dataset_id):
        """One of your datasets: its state, parse log and statistics (of its latest revision, or ?revision=)"""
        ctx = api_context()
        dataset = datasets.get(ctx, dataset_id)
        shown = None if query["revision"] is None else dataset_edits.revision(ctx, dataset_id, query["revision"])
        return dataset_object(dataset, revision=shown)

    @blp.response(200, description="null")
    def delete(self, dataset_id):
        """Delete one of your datasets and its files (not while a queued or running job trains on it)"""
        datasets.delete(api_context(), dataset_id)
        return None


@blp.route("/datasets/<string:dataset_id>/revisions")
class Revisions(MethodView):
    @blp.response(200, RevisionObject(many=True))
    def get(self, dataset_id):
        """Your dataset's revisions, oldest first: what each edit changed, and the statistics after it"""
        return [revision_object(row) for row in dataset_edits.revisions(api_context(), dataset_id)]


@blp.route("/datasets/<string:dataset_id>/samples")
class Samples(MethodView):
    @blp.arguments(SamplesQuery, location="query")
    @blp.response(200, SamplesPage)
    def get(self, query, dataset_id):
        """A page of a revision's samples, each with its id"""
        number, page, total = dataset_edits.samples(api_context(), dataset_id, query["revision"], query["offset"],
                                                    query["limit"])
        return {"object": "list", "dataset_id": dataset_id, "revision": number, "total": total,
                "offset": query["offset"], "data": page}

    @blp.arguments(AddSamplesBody)
    @blp.response(201, RevisionObject)
    def post(self, body, dataset_id):
        """Add samples to your dataset (a new label makes a new class): a new revision"""
        revision, sample_ids = dataset_edits.add_samples(api_context(), dataset_id, body["samples"])
        return revision_object(revision, sample_ids), 201

    @blp.arguments(RemoveSamplesBody)
    @blp.response(200, RevisionObject)
    def delete(self, body, dataset_id):
        """Remove samples from your dataset by id or uid: a new revision"""
        return revision_object(dataset_edits.remove_samples(api_context(), dataset_id, body["ids"], body["uids"]))


@blp.route("/datasets/<string:dataset_id>/samples/delete", methods=["POST"])
@blp.arguments(RemoveSamplesBody)
@blp.response(200, RevisionObject)
def remove_samples(body, dataset_id):
    """Remove samples from your dataset by id or uid (as DELETE .../samples, for clients that send no DELETE body)"""
    return revision_object(dataset_edits.remove_samples(api_context(), dataset_id, body["ids"], body["uids"]))


@blp.route("/datasets/<string:dataset_id>/classes/<path:label>", methods=["DELETE"])
@blp.response(200, RevisionObject)
def remove_class(dataset_id, label):
    """Remove a class (every sample with that label) from your dataset: a new revision"""
    return revision_object(dataset_edits.remove_class(api_context(), dataset_id, label))


@blp.route("/dataset-uploads/<string:dataset_id>", methods=["PUT"])
def receive_dataset_upload(dataset_id):
    """The local storage's dataset upload URL: its signature, not an API key, authorises it."""
    db_session = session()
    dataset = db_session.get(Dataset, dataset_id)
    pending = dataset is not None and dataset.status == "awaiting_upload"
    written = receive_signed_upload(dataset_id, dataset.upload_expires_at if pending else None,
                                    dataset_source(current_settings().data_dir, dataset_id), "DATASET_MAX_BYTES",
                                    "the dataset file", "create a new dataset for another upload")
    dataset.status, dataset.size_bytes = "processing", written
    dataset.parse_log = [*dataset.parse_log, log_line(f"Received {written} bytes; waiting in the queue.")]
    db_session.commit()
    current_app.extensions["work"].submit("parse", dataset_id)
    return {"message": f"Upload received; the dataset is being parsed. Follow it with GET /datasets/{dataset_id}."}
