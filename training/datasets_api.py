"""/datasets: upload training data, follow its parsing, read its statistics.

Small datasets come in the request (JSON "data", or a multipart "file"), up to
INFER_DATASET_MAX_DIRECT_BYTES; larger ones through an upload URL (the same
signed PUT, or S3 presigned PUT, as model zips), up to INFER_DATASET_MAX_BYTES.
Either way the dataset is parsed in the background (training/dataset_parses.py
runs training/datasets/child.py): processing -> ready | failed, with a parse log.
"""

import os
from datetime import timedelta

from flask import current_app, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import func, select

from app.auth import current_account_id
from app.blueprint import Blueprint
from app.db import Dataset, TrainingJob, owned, session, utcnow
from core.errors import BadRequest, NotFound, PayloadTooLarge
from tasks.common import StrictSchema
from uploads.api import Conflict, base_url, iso_time, receive_signed_upload
from uploads.archive import remove_tree
from uploads.quotas import QuotaExceeded, check_room

from .dataset_bundles import discard_parsed_dataset, share_direct_upload
from .datasets import FORMAT_TASKS
from .paths import dataset_dir, dataset_source, new_id
from .records import log_line

blp = Blueprint("datasets", __name__, description="Training data: upload, parse log, statistics.")

UPLOAD_URL_LIFETIME = timedelta(hours=1)


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


def dataset_object(dataset: Dataset, upload_url: str | None = None) -> dict:
    return {
        "id": dataset.id, "object": "dataset", "name": dataset.name, "format": dataset.format,
        "trains": FORMAT_TASKS.get(dataset.format, []), "status": dataset.status, "message": dataset.message,
        "size_bytes": dataset.size_bytes, "stats": dataset.stats, "parse_logs": list(dataset.parse_log or []),
        "upload_url": upload_url, "created_at": iso_time(dataset.created_at),
        "finished_at": iso_time(dataset.finished_at),
    }


def find_dataset(db_session, account_id: int, dataset_id: str) -> Dataset:
    """The account's dataset; another account's answers exactly as a missing one."""
    dataset = owned(db_session, Dataset, dataset_id, account_id)
    if dataset is None:
        raise NotFound(f"Dataset {dataset_id!r} not found; GET /datasets lists yours.")
    return dataset


@blp.before_request
def allow_dataset_bodies():
    # Datasets are larger than task requests: their body has its own limit.
    if request.endpoint == "datasets.Datasets" and request.method == "POST":
        request.max_content_length = int(current_app.config["DATASET_MAX_DIRECT_BYTES"])
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
        config = current_app.config
        sources = [body["data"] is not None, upload is not None, body["upload"]]
        if sum(sources) != 1:
            raise BadRequest("Send exactly one of: \"data\" (the CSV or JSONL text), a multipart \"file\", "
                             "or \"upload\": true for an upload URL.")
        db_session = session()
        account_id = current_account_id()
        count = db_session.scalar(select(func.count()).select_from(Dataset).where(Dataset.account_id == account_id))
        if count >= int(config["ACCOUNT_MAX_DATASETS"]):
            raise QuotaExceeded(f"This account has {count} datasets; the limit is {config['ACCOUNT_MAX_DATASETS']} "
                                "(INFER_ACCOUNT_MAX_DATASETS). Delete one first.")
        check_room(db_session, config, account_id, "create a dataset")
        options = {key: body[key] for key in ("label_column", "text_column") if body[key]}
        dataset = Dataset(id=new_id("ds"), account_id=account_id, name=body["name"], format=body["format"] or "",
                          options=options, parse_log=[])
        folder = dataset_dir(config["DATA_DIR"], dataset.id)
        os.makedirs(folder)
        upload_url = None
        if body["upload"]:
            expires = utcnow() + UPLOAD_URL_LIFETIME
            dataset.status, dataset.upload_expires_at = "awaiting_upload", expires
            dataset.parse_log = [log_line("Waiting for the upload.")]
            upload_url = _upload_url(dataset.id, int(expires.timestamp()))
        else:
            dataset.size_bytes = _save_direct(body["data"], upload, dataset_source(config["DATA_DIR"], dataset.id),
                                              int(config["DATASET_MAX_DIRECT_BYTES"]))
            share_direct_upload(current_app.extensions["storage"], dataset.id, config["DATA_DIR"])  # S3: any parser
            dataset.parse_log = [log_line(f"Received {dataset.size_bytes} bytes; waiting in the queue.")]
        db_session.add(dataset)
        db_session.commit()
        current_app.extensions["work"].submit("parse", dataset.id)
        return dataset_object(dataset, upload_url), 201

    @blp.response(200, DatasetObject(many=True))
    def get(self):
        """Your datasets, newest first"""
        datasets = session().scalars(select(Dataset).where(Dataset.account_id == current_account_id())
                                     .order_by(Dataset.created_at.desc(), Dataset.id)).all()
        return [dataset_object(dataset) for dataset in datasets]


def _save_direct(data: str | None, upload, path: str, limit: int) -> int:
    if data is not None:
        encoded = data.encode("utf-8")
        if len(encoded) > limit:
            raise PayloadTooLarge(f"The data is {len(encoded)} bytes; send at most {limit} in the request "
                                  "(INFER_DATASET_MAX_DIRECT_BYTES), or ask for an upload URL with \"upload\": true.")
        with open(path, "wb") as out:
            out.write(encoded)
    else:
        upload.save(path)
    size = os.path.getsize(path)
    if size == 0:
        remove_tree(os.path.dirname(path))
        raise BadRequest("The dataset is empty: send its rows.")
    return size


def _upload_url(dataset_id: str, expires: int) -> str:
    storage = current_app.extensions["storage"]
    if storage.kind == "s3":
        return storage.upload_url(0, expires, "", key=storage.dataset_key(dataset_id))
    return storage.upload_url(dataset_id, expires, base_url(), route="dataset-uploads")


@blp.route("/datasets/<string:dataset_id>")
class DatasetResource(MethodView):
    @blp.response(200, DatasetObject)
    def get(self, dataset_id):
        """One of your datasets: its state, parse log and statistics"""
        return dataset_object(find_dataset(session(), current_account_id(), dataset_id))

    @blp.response(200, description="null")
    def delete(self, dataset_id):
        """Delete one of your datasets and its files (not while a queued or running job trains on it)"""
        db_session = session()
        dataset = find_dataset(db_session, current_account_id(), dataset_id)
        in_use = db_session.scalar(select(TrainingJob.id).where(
            (TrainingJob.dataset_id == dataset.id) | (TrainingJob.validation_dataset_id == dataset.id),
            TrainingJob.status.in_(("queued", "running"))).limit(1))
        if in_use:
            raise Conflict(f"Job {in_use} trains on this dataset; cancel it (POST /jobs/{in_use}/cancel) or let it "
                           "finish before deleting the dataset.")
        db_session.delete(dataset)
        db_session.commit()
        remove_tree(dataset_dir(current_app.config["DATA_DIR"], dataset_id))
        storage = current_app.extensions["storage"]
        if storage.kind == "s3":
            storage.delete(0, key=storage.dataset_key(dataset_id))
        discard_parsed_dataset(storage, dataset_id)  # S3: its parsed files, kept for the other replicas
        return None


@blp.route("/dataset-uploads/<string:dataset_id>", methods=["PUT"])
def receive_dataset_upload(dataset_id):
    """The local storage's dataset upload URL: its signature, not an API key, authorises it."""
    db_session = session()
    dataset = db_session.get(Dataset, dataset_id)
    pending = dataset is not None and dataset.status == "awaiting_upload"
    written = receive_signed_upload(dataset_id, dataset.upload_expires_at if pending else None,
                                    dataset_source(current_app.config["DATA_DIR"], dataset_id), "DATASET_MAX_BYTES",
                                    "the dataset file", "create a new dataset for another upload")
    dataset.status, dataset.size_bytes = "processing", written
    dataset.parse_log = [*dataset.parse_log, log_line(f"Received {written} bytes; waiting in the queue.")]
    db_session.commit()
    current_app.extensions["work"].submit("parse", dataset_id)
    return {"message": f"Upload received; the dataset is being parsed. Follow it with GET /datasets/{dataset_id}."}
