"""An account's models: list, read, delete, their build log and files, and the
start of an upload (the URL a model's zip is PUT to, a new version of it)."""

import os
import re
from datetime import timedelta

from sqlalchemy import select

from core.errors import Conflict, InvalidInput, NotFound
from core.tables import ModelVersion, TrainingJob, UserModel, utcnow
from model_registry.catalogue import MODELS, TASK_MODELS
from uploads.archive import remove_tree
from uploads.quotas import check_new_upload
from uploads.serving import cache_key, version_dirs
from uploads.user_models import lookup_model, owned_model
from uploads.version_bundles import delete_model_bundles
from uploads.versions import add_numbered_version

from .account import ServiceContext

UPLOAD_URL_LIFETIME = timedelta(hours=1)
# A global model's public names and catalogue keys: no account's model may take one.
RESERVED_NAMES = {name for names in TASK_MODELS.values() for name in names} | set(MODELS)
MODEL_NAME_PATTERN = r"^[a-z0-9_-]{3,100}$"
MODEL_NAME_RULE = "3-100 characters: lowercase letters, digits, dashes (-) and underscores (_)."
# The files of a serving version that can be downloaded.
SERVED_FILES = ("model.bin", "inference.py", "config.json", "requirements.txt")


def check_model_name(name: str, field: str) -> None:
    """A name an account's model may have (`field`: the request field it came in)."""
    if re.match(MODEL_NAME_PATTERN, name) is None:
        raise InvalidInput(f"Invalid request. {field}: {MODEL_NAME_RULE}", errors={field: [MODEL_NAME_RULE]})


def own_models(ctx: ServiceContext) -> list[UserModel]:
    """The account's models, by name."""
    return list(ctx.db.scalars(select(UserModel).where(UserModel.account_id == ctx.account_id)
                               .order_by(UserModel.name)).all())


def get(ctx: ServiceContext, name: str) -> UserModel:
    """The account's model `name`; another account's answers as a missing one (404)."""
    return owned_model(ctx.db, ctx.account_id, name)


def latest_version(model: UserModel) -> ModelVersion | None:
    return model.versions[-1] if model.versions else None


def build_status(db, model: UserModel) -> str:
    """success, building, fail or awaiting_upload: the model as its latest version stands."""
    latest = latest_version(model)
    if latest is None:
        # A model made by POST /models/{name}/train has no version until its first job ends.
        training = db.scalar(select(TrainingJob.id).where(
            TrainingJob.model_id == model.id, TrainingJob.status.in_(("queued", "running"))).limit(1))
        return "building" if training else "awaiting_upload"
    if latest.status in ("queued", "building"):
        return "building"
    if latest.status == "awaiting_upload":
        return "success" if model.current_version_id else "awaiting_upload"
    return latest.status


def serving_file(ctx: ServiceContext, model: UserModel, filename: str) -> str | None:
    """The path of one of the serving version's files, if it has one."""
    if not model.current_version_id:
        return None
    ctx.part("user_models").ensure_files(ctx.db, model)  # another replica built it?
    path = os.path.join(version_dirs(ctx.config.data_dir, model.current_version_id)[0], filename)
    return path if os.path.isfile(path) else None


def downloadable_file(ctx: ServiceContext, name: str, filename: str) -> str:
    """The path of a file of the account's model's serving version, to send."""
    if filename not in SERVED_FILES:
        raise NotFound(f"file {filename} not found")
    path = serving_file(ctx, get(ctx, name), filename)
    if path is None:
        raise NotFound(f"file {filename} not found")
    return path


def latest_build(ctx: ServiceContext, name: str) -> ModelVersion:
    """The latest version of the account's model, whose build log is the model's."""
    latest = latest_version(get(ctx, name))
    if latest is None:
        raise NotFound(f"model {name} has no build yet")
    return latest


def delete(ctx: ServiceContext, name: str) -> None:
    """Delete the account's model, its versions, their files and loaded copies."""
    model = get(ctx, name)
    version_ids = [version.id for version in model.versions]
    delete_model_bundles(ctx.part("storage"), model.versions, name)  # S3: before the rows go
    ctx.db.delete(model)
    ctx.db.commit()
    cache = ctx.part("models").cache
    for version_id in version_ids:
        cache.evict(cache_key(version_id))
        remove_tree(os.path.dirname(version_dirs(ctx.config.data_dir, version_id)[0]))


def start_upload(ctx: ServiceContext, name: str, webhook: str | None = None) -> str:
    """A URL that takes a PUT of the model's zip for an hour: a new version of the
    account's model `name` (made if new, within the account's quotas); `webhook`
    (checked by the caller) is called when its build ends."""
    check_model_name(name, "model_name")
    if name in RESERVED_NAMES:
        raise Conflict(f"{name!r} is the name of a global model; choose another name.")
    model = lookup_model(ctx.db, ctx.account_id, name)
    check_new_upload(ctx.db, ctx.config, ctx.account_id, new_model=model is None)
    if model is None:
        model = UserModel(account_id=ctx.account_id, name=name, tasks=[])
        ctx.db.add(model)
        ctx.db.flush()
    expires = utcnow() + UPLOAD_URL_LIFETIME
    version = add_numbered_version(ctx.db, model.id, upload_expires_at=expires)
    version.webhook = webhook
    ctx.db.commit()
    return ctx.part("storage").upload_url(version.id, int(expires.timestamp()), ctx.base_url)
