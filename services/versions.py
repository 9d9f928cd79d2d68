"""An account's model versions: list them, promote one to serve, read the record of serving moves."""

from sqlalchemy import select

from core.errors import Conflict, NotFound
from core.tables import ModelVersion, ServingChange, UserModel
from uploads.versions import has_files, move_serving, version_numbered

from .account import ServiceContext
from .models import get as get_model


def listed(ctx: ServiceContext, name: str) -> tuple[UserModel, list[ModelVersion]]:
    """The account's model and every version of it, oldest first."""
    model = get_model(ctx, name)
    return model, list(model.versions)


def numbered(ctx: ServiceContext, name: str, number: int) -> tuple[UserModel, ModelVersion]:
    """The account's model and its version `number` (NotFound for another account's, as for a missing one)."""
    model = get_model(ctx, name)
    version = version_numbered(ctx.db, model, number)
    if version is None:
        raise NotFound(f"Model {name!r} has no version {number}; GET /models/{name}/versions lists them.")
    return model, version


def promote(ctx: ServiceContext, name: str, number: int) -> tuple[UserModel, ModelVersion]:
    """Make version `number` the one that serves (back or forth); the move is recorded."""
    model, version = numbered(ctx, name, number)
    if version.status != "success":
        raise Conflict(f"Version {number} of {name!r} is {version.status}: only a successful version can serve.")
    if not has_files(ctx.config.data_dir, version):
        raise Conflict(f"Version {number} of {name!r} no longer has its files (only the newest "
                       f"{ctx.config.user_model_versions_kept} keep theirs: "
                       "INFER_USER_MODEL_VERSIONS_KEPT); it cannot serve again.")
    if model.current_version_id != version.id:
        move_serving(ctx.db, model, version, "promote")
        ctx.db.commit()
    return model, version


def serving_history(ctx: ServiceContext, name: str) -> list[ServingChange]:
    """Every move of the serving version of the account's model, oldest first."""
    model = get_model(ctx, name)
    return list(ctx.db.scalars(select(ServingChange).where(ServingChange.model_id == model.id)
                               .order_by(ServingChange.id)).all())
