"""Per-account limits on user models: how many, how many uploads at once, and
how much disk their versions take (files and venvs).

A quota is checked when an upload URL is asked for (so a full account learns
it before uploading gigabytes) and again when a build has measured what its
version takes (a build that would go over fails, and its files are removed).
"""

from sqlalchemy import func, or_, select

from app.db import ModelVersion, UserModel, utcnow
from core.errors import ApiError, TooManyRequests


class QuotaExceeded(ApiError):
    status = 403


def stored_bytes(session, account_id: int, excluding_version: int | None = None) -> int:
    query = (select(func.coalesce(func.sum(ModelVersion.stored_bytes), 0))
             .join(UserModel, ModelVersion.model_id == UserModel.id)
             .where(UserModel.account_id == account_id))
    if excluding_version is not None:
        query = query.where(ModelVersion.id != excluding_version)
    return int(session.scalar(query))


def check_new_upload(session, config: dict, account_id: int, new_model: bool) -> None:
    """Before handing out an upload URL."""
    if new_model:
        limit = int(config["ACCOUNT_MAX_MODELS"])
        count = session.scalar(select(func.count()).select_from(UserModel).where(UserModel.account_id == account_id))
        if count >= limit:
            raise QuotaExceeded(f"This account has {count} models; the limit is {limit} (INFER_ACCOUNT_MAX_MODELS). "
                                "Delete one, or upload a new version of an existing model.")
    limit = int(config["ACCOUNT_MAX_PENDING_UPLOADS"])
    pending = session.scalar(
        select(func.count()).select_from(ModelVersion)
        .join(UserModel, ModelVersion.model_id == UserModel.id)
        .where(UserModel.account_id == account_id, or_(
            ModelVersion.status.in_(("queued", "building")),
            (ModelVersion.status == "awaiting_upload") & (ModelVersion.upload_expires_at > utcnow()),
        ))
    )
    if pending >= limit:
        raise TooManyRequests(
            f"This account has {pending} uploads waiting or building; the limit is {limit} "
            "(INFER_ACCOUNT_MAX_PENDING_UPLOADS). Wait for a build to finish, or let unused upload URLs expire.",
            headers={"Retry-After": "30"},
        )
    limit_bytes = int(config["ACCOUNT_MAX_STORED_MB"]) * 2**20
    used = stored_bytes(session, account_id)
    if used >= limit_bytes:
        raise QuotaExceeded(f"This account's models take {used} bytes; the limit is {limit_bytes} "
                            "(INFER_ACCOUNT_MAX_STORED_MB). Delete a model to make room.")


def check_stored_bytes(session, config: dict, version_id: int, new_bytes: int) -> None:
    """When a build knows what its version takes on disk."""
    version = session.get(ModelVersion, version_id)
    if version is None:
        return
    account_id = session.get(UserModel, version.model_id).account_id
    limit_bytes = int(config["ACCOUNT_MAX_STORED_MB"]) * 2**20
    total = stored_bytes(session, account_id, excluding_version=version_id) + new_bytes
    if total > limit_bytes:
        raise QuotaExceeded(f"This version takes {new_bytes} bytes, which would bring the account's models to {total}; "
                            f"the limit is {limit_bytes} (INFER_ACCOUNT_MAX_STORED_MB). Delete a model to make room.")
