"""/upload-url, the local upload PUT, and /models: Backprop's deployment flow, self-hosted."""

import os
import time
from datetime import datetime, timedelta, timezone

from flask import current_app, request, send_file
from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from app.auth import current_account_id
from app.blueprint import Blueprint
from app.db import ModelVersion, TrainingJob, UserModel, session, utcnow
from app.settings import current_settings
from core.errors import ApiError, BadRequest, NotFound, PayloadTooLarge
from model_registry.availability import presence
from model_registry.catalogue import MODELS, TASK_MODELS, tasks_of
from tasks.common import StrictSchema, presence_fields

from .archive import remove_tree
from .quotas import check_new_upload
from .serving import cache_key, version_dirs
from .storage import UploadRejected
from .user_models import find_model, lookup_model
from .version_bundles import delete_model_bundles
from .versions import add_numbered_version

blp = Blueprint("models", __name__, description="Your uploaded models.")

UPLOAD_URL_LIFETIME = timedelta(hours=1)
RESERVED_NAMES = {name for names in TASK_MODELS.values() for name in names} | set(MODELS)


class Conflict(ApiError):
    status = 409


class UploadTimeout(ApiError):
    status = 408


class UploadUrlBody(StrictSchema):
    model_name = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z0-9_-]{3,100}$", error="3-100 characters: lowercase letters, digits, dashes (-) and underscores (_)."),
        metadata={"description": "3-100 characters. Lowercase ascii with numbers, dashes (-) and underscores (_)."})


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


def as_utc(moment: datetime) -> datetime:
    # SQLite hands datetimes back without their zone; they are UTC.
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def iso_time(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _latest(model: UserModel) -> ModelVersion | None:
    return model.versions[-1] if model.versions else None


def build_status(model: UserModel) -> str:
    latest = _latest(model)
    if latest is None:
        # A model made by POST /models/{name}/train has no version until its first job ends.
        training = session().scalar(select(TrainingJob.id).where(
            TrainingJob.model_id == model.id, TrainingJob.status.in_(("queued", "running"))).limit(1))
        return "building" if training else "awaiting_upload"
    if latest.status in ("queued", "building"):
        return "building"
    if latest.status == "awaiting_upload":
        return "success" if model.current_version_id else "awaiting_upload"
    return latest.status


def summary(model: UserModel) -> dict:
    return {
        "id": f"model_{model.name}", "name": model.name, "description": model.description,
        "tasks": list(model.tasks or []), "build_status": build_status(model),
        "last_deployment": iso_time(model.last_deployment),
    }


def serving_file(model: UserModel, filename: str) -> str | None:
    """The path of one of the serving version's files, if it has one."""
    if not model.current_version_id:
        return None
    current_app.extensions["user_models"].ensure_files(session(), model)  # another replica built it?
    path = os.path.join(version_dirs(current_settings().data_dir, model.current_version_id)[0], filename)
    return path if os.path.isfile(path) else None


def base_url() -> str:
    return current_settings().public_url or request.host_url


@blp.route("/upload-url")
class UploadUrl(MethodView):
    @blp.arguments(UploadUrlBody)
    @blp.response(200, description="A URL (a JSON string) that takes a PUT of the zip for an hour.")
    def post(self, body):
        """Get a URL to PUT a model's zip to; uploading to an existing name makes a new version"""
        name = body["model_name"]
        if name in RESERVED_NAMES:
            raise Conflict(f"{name!r} is the name of a global model; choose another name.")
        db_session = session()
        account_id = current_account_id()
        model = lookup_model(db_session, account_id, name)
        check_new_upload(db_session, current_settings(), account_id, new_model=model is None)
        if model is None:
            model = UserModel(account_id=account_id, name=name, tasks=[])
            db_session.add(model)
            db_session.flush()
        expires = utcnow() + UPLOAD_URL_LIFETIME
        version = add_numbered_version(db_session, model.id, upload_expires_at=expires)
        db_session.commit()
        storage = current_app.extensions["storage"]
        return storage.upload_url(version.id, int(expires.timestamp()), base_url())


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
        models = session().scalars(
            select(UserModel).where(UserModel.account_id == current_account_id()).order_by(UserModel.name)
        ).all()
        listed = [summary(model) for model in models]
        if query["include_global"]:
            for spec in MODELS.values():
                listed.append({"id": f"global_{spec.key}", "name": spec.key, "description": spec.description,
                               "tasks": tasks_of(spec.key), "build_status": "success", "last_deployment": None,
                               **presence(spec, current_settings().model_dir).fields()})
        return listed


@blp.route("/models/<string:name>")
class Model(MethodView):
    @blp.response(200, ModelDetails)
    def get(self, name):
        """One of your models in detail (global models cannot be queried)"""
        model = find_model(session(), current_account_id(), name)
        latest = _latest(model)
        base = f"{base_url().rstrip('/')}/models/{name}/files/"

        def url(filename):
            return base + filename if serving_file(model, filename) else None

        return {**summary(model), "build_message": latest.build_message if latest else "",
                "model_url": url("model.bin") or url("inference.py"), "config_url": url("config.json"),
                "requirements_url": url("requirements.txt")}

    @blp.response(200, description="null")
    def delete(self, name):
        """Delete one of your models, all its versions and files"""
        db_session = session()
        model = find_model(db_session, current_account_id(), name)
        version_ids = [version.id for version in model.versions]
        delete_model_bundles(current_app.extensions["storage"], model.versions, name)  # S3: before the rows go
        db_session.delete(model)
        db_session.commit()
        registry = current_app.extensions["models"]
        for version_id in version_ids:
            registry.cache.evict(cache_key(version_id))
            remove_tree(os.path.dirname(version_dirs(current_settings().data_dir, version_id)[0]))
        return None


@blp.route("/models/<string:name>/build-log")
class ModelBuildLog(MethodView):
    @blp.response(200, BuildLog)
    def get(self, name):
        """The latest build's log"""
        latest = _latest(find_model(session(), current_account_id(), name))
        if latest is None:
            raise NotFound(f"model {name} has no build yet")
        return {"version": latest.number, "build_status": latest.status, "log": latest.build_log or latest.build_message}


@blp.route("/models/<string:name>/files/<string:filename>")
class ModelFile(MethodView):
    @blp.response(200)
    def get(self, name, filename):
        """Download model.bin / inference.py, config.json or requirements.txt of the serving version"""
        if filename not in ("model.bin", "inference.py", "config.json", "requirements.txt"):
            raise NotFound(f"file {filename} not found")
        path = serving_file(find_model(session(), current_account_id(), name), filename)
        if path is None:
            raise NotFound(f"file {filename} not found")
        return send_file(path, as_attachment=True, download_name=filename)
