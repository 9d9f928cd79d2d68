"""/upload-url, the local upload PUT, and /models: Backprop's deployment flow, self-hosted."""

import os
import time
from datetime import datetime

from flask import current_app, request, send_file
from flask.views import MethodView
from marshmallow import Schema, fields, validate
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from api.webhook_urls import check_webhook
from core.errors import ApiError, BadRequest, Conflict, NotFound, PayloadTooLarge
from core.tables import ModelVersion, UserModel
from core.times import as_utc, iso_time
from model_registry.availability import presence
from model_registry.catalogue import MODELS, tasks_of
from services import models
from services.account import ServiceContext
from services.models import MODEL_NAME_PATTERN, MODEL_NAME_RULE
from tasks.common import StrictSchema, presence_fields
from uploads.storage import UploadRejected
from web.blueprint import Blueprint
from web.database import session
from web.service_context import api_context
from web.settings import current_settings

blp = Blueprint("models", __name__, description="Your uploaded models.")

class UploadTimeout(ApiError):
    status = 408


class UploadUrlBody(StrictSchema):
    model_name = fields.String(required=True, validate=validate.Regexp(MODEL_NAME_PATTERN, error=MODEL_NAME_RULE),
        metadata={"description": "3-100 characters. Lowercase ascii with numbers, dashes (-) and underscores (_)."})
    webhook = fields.String(load_default=None, allow_none=True, metadata={
        "description": "A URL called once when this upload's build ends (success or fail) with the version, signed like prediction webhooks (X-Infer-Signature, GET /webhook-secret)."})


class ModelsQuery(Schema):
    include_global = fields.Boolean(load_default=False)


class ModelSummary(Schema):
    id = fields.String()
    name = fields.String()
    description = fields.String()
    tasks = fields.List(fields.String())
    build_status = fields.String(metadata={"description": "success, building, fail, or awaiting_upload"})
    last_deployment = fields.String(allow_none=True)
    available, download = presence_fields()


class ModelDetails(ModelSummary):
    class Meta:
        # One of your models: presence is the global models' (the listing's) alone.
        exclude = ("available", "download")

    build_message = fields.String()
    model_url = fields.String(allow_none=True)
    config_url = fields.String(allow_none=True)
    requirements_url = fields.String(allow_none=True)


class BuildLog(Schema):
    version = fields.Integer()
    build_status = fields.String()
    log = fields.String()


def summary(model: UserModel, db) -> dict:
    return {
        "id": f"model_{model.name}", "name": model.name, "description": model.description,
        "tasks": list(model.tasks or []), "build_status": models.build_status(db, model),
        "last_deployment": iso_time(model.last_deployment),
    }


def model_listing(ctx: ServiceContext, include_global: bool) -> list[dict]:
    """GET /models: the account's models, and with include_global the global ones."""
    listed = [summary(model, ctx.db) for model in models.own_models(ctx)]
    if include_global:
        for spec in MODELS.values():
            listed.append({"id": f"global_{spec.key}", "name": spec.key, "description": spec.description,
                           "tasks": tasks_of(spec.key), "build_status": "success", "last_deployment": None,
                           **presence(spec, ctx.config.model_dir).fields()})
    return listed


def model_details(ctx: ServiceContext, name: str) -> dict:
    """GET /models/{name}: one of the account's models, with its serving version's file URLs."""
    model = models.get(ctx, name)
    latest = models.latest_version(model)
    base = f"{ctx.base_url.rstrip('/')}/models/{name}/files/"

    def url(filename):
        return base + filename if models.serving_file(ctx, model, filename) else None

    return {**summary(model, ctx.db), "build_message": latest.build_message if latest else "",
            "model_url": url("model.bin") or url("inference.py"), "config_url": url("config.json"),
            "requirements_url": url("requirements.txt")}


@blp.route("/upload-url")
class UploadUrl(MethodView):
    @blp.arguments(UploadUrlBody)
    @blp.response(200, description="A URL (a JSON string) that takes a PUT of the zip for an hour.")
    def post(self, body):
        """Get a URL to PUT a model's zip to; uploading to an existing name makes a new version"""
        return models.start_upload(api_context(), body["model_name"], check_webhook(body.get("webhook")))


@blp.route("/uploads/<int:version_id>", methods=["PUT"])
def receive_upload(version_id):
    """The local storage's upload URL: the signature, not an API key, authorises it."""
    db_session = session()
    version = db_session.get(ModelVersion, version_id)
    pending = version is not None and version.status == "awaiting_upload"
    receive_signed_upload(version_id, version.upload_expires_at if pending else None,
                          current_app.extensions["storage"].archive_path(version_id),
                          "UPLOAD_MAX_BYTES", "the zip", "ask POST /upload-url for a new one")
    version.status = "queued"
    model_name = db_session.get(UserModel, version.model_id).name
    db_session.commit()
    current_app.extensions["work"].submit("build", version_id)
    return {"message": f"Upload received; the build is queued. Follow it with GET /models/{model_name}."}


def receive_signed_upload(object_id, issued_expiry: datetime | None, path: str, limit_key: str, what: str,
                          ask_again: str) -> int:
    """Check a local signed upload URL (a model version's or a dataset's) and write
    its PUT body to `path`, whole or not at all; the bytes written.

    issued_expiry is the expiry stored for a URL still waiting for its upload
    (None: used already, or never issued). The URL must carry exactly it, not
    merely a validly signed one: a signing secret that leaked would otherwise
    make URLs that never expire; verify() checks that it has not passed."""
    storage = current_app.extensions["storage"]
    if getattr(storage, "kind", "") != "local":
        raise NotFound(f"Uploads go to the S3 bucket; {ask_again}.")
    expires = request.args.get("expires")
    storage.verify(object_id, expires, request.args.get("signature"))
    if issued_expiry is None:
        raise Conflict(f"This upload URL was used already; {ask_again}.")
    if expires != str(int(as_utc(issued_expiry).timestamp())):
        raise UploadRejected(f"This upload URL is not the one issued; {ask_again}.")
    limit = getattr(current_settings(), limit_key.lower())
    # Uploads are far larger than API bodies: this request has its own limit.
    request.max_content_length = limit
    partial = path + ".partial"
    idle_timeout_s = current_settings().upload_idle_timeout_s
    claim_partial(partial, idle_timeout_s, ask_again)
    try:
        written = receive_body(partial, limit, idle_timeout_s, f"INFER_{limit_key}")
        if not written:
            raise BadRequest(f"The upload is empty: PUT {what} as the request body.")
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return written


def claim_partial(partial: str, idle_timeout_s: float, ask_again: str) -> None:
    """Make the upload's partial file, or 409 while another PUT to the same URL
    writes it: one URL holds at most one server thread, however many connections
    a client opens to it. A partial file untouched for longer than the idle
    timeout was left by a process that died mid-upload, and is taken over."""
    for _attempt in range(2):
        try:
            os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return
        except FileExistsError:
            try:
                idle = time.time() - os.stat(partial).st_mtime
            except FileNotFoundError:
                continue  # it finished meanwhile: try again
            if idle <= idle_timeout_s + 5:
                break
            os.remove(partial)
    raise Conflict(f"Another PUT to this upload URL is in progress; wait for it to end, or {ask_again}.",
                   headers={"Retry-After": str(int(idle_timeout_s))})


def receive_body(path: str, limit: int, idle_timeout_s: float, limit_setting: str = "INFER_UPLOAD_MAX_BYTES") -> int:
    """Write the request body to `path`; its length. A body that stops arriving
    for idle_timeout_s is a 408, one shorter than its Content-Length a 400, one
    over `limit` (chunked bodies have no length up front) a 413."""
    too_large = PayloadTooLarge(f"The upload is over {limit} bytes ({limit_setting}).")
    if request.content_length and request.content_length > limit:
        raise too_large  # said before a byte is read
    connection = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    previous_timeout = connection.gettimeout() if connection is not None else None
    if connection is not None:
        connection.settimeout(idle_timeout_s)
    written = 0
    last_byte = time.monotonic()
    try:
        with open(path, "wb") as out:
            while chunk := request.stream.read(1 << 20):
                last_byte = time.monotonic()
                written += len(chunk)
                if written > limit:
                    raise too_large
                out.write(chunk)
    except RequestEntityTooLarge:  # werkzeug's own count, on a chunked body
        raise too_large from None
    except (ClientDisconnected, OSError):
        if time.monotonic() - last_byte >= idle_timeout_s * 0.9:
            raise UploadTimeout(f"No data arrived for {idle_timeout_s:g}s (INFER_UPLOAD_IDLE_TIMEOUT_S); "
                                "PUT the zip again with the same URL.", headers={"Connection": "close"}) from None
        raise BadRequest("The upload ended before its end: PUT the whole zip again with the same URL.") from None
    finally:
        if connection is not None:
            try:
                connection.settimeout(previous_timeout)
            except OSError:
                pass
    if request.content_length is not None and written != request.content_length:
        raise BadRequest(f"The upload ended after {written} of its {request.content_length} bytes "
                         "(Content-Length): PUT the whole zip again with the same URL.")
    return written


@blp.route("/models")
class Models(MethodView):
    @blp.arguments(ModelsQuery, location="query")
    @blp.response(200, ModelSummary(many=True))
    def get(self, query):
        """Your models, and with include_global the global ones"""
        return model_listing(api_context(), query["include_global"])


@blp.route("/models/<string:name>")
class Model(MethodView):
    @blp.response(200, ModelDetails)
    def get(self, name):
        """One of your models in detail (global models cannot be queried)"""
        return model_details(api_context(), name)

    @blp.response(200, description="null")
    def delete(self, name):
        """Delete one of your models, all its versions and files"""
        models.delete(api_context(), name)
        return None


@blp.route("/models/<string:name>/build-log")
class ModelBuildLog(MethodView):
    @blp.response(200, BuildLog)
    def get(self, name):
        """The latest build's log"""
        latest = models.latest_build(api_context(), name)
        return {"version": latest.number, "build_status": latest.status, "log": latest.build_log or latest.build_message}


@blp.route("/models/<string:name>/files/<string:filename>")
class ModelFile(MethodView):
    @blp.response(200)
    def get(self, name, filename):
        """Download model.bin / inference.py, config.json or requirements.txt of the serving version"""
        path = models.downloadable_file(api_context(), name, filename)
        return send_file(path, as_attachment=True, download_name=filename)
