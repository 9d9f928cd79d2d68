"""Per-account limits on what an account keeps: how many models, how many
uploads at once, and how many bytes everything it stores takes.

Stored bytes are counted by one function (`stored_usage`) for every caller:
model versions (files and venvs), datasets (the uploaded file and its parsed
rows and images), the checkpoints of jobs that have not ended, batches' input
and output files, and the files sent to /v1/files for them. Each row keeps its
own measured size (ModelVersion.stored_bytes, Dataset.stored_bytes,
TrainingJob.stored_bytes, Batch.stored_bytes, UploadedFile.bytes), so the sum is
one query per kind, the same on every replica.

A quota is checked before anything is stored (an upload URL, a new dataset, a
new training job: 403 when the account is already at its limit, so a full
account learns it before uploading gigabytes) and again when what was made has
been measured (a build, a parse, a running job's checkpoints, a trained version:
over the limit it fails, saying what takes the space, and its files go).
"""

from dataclasses import dataclass

from sqlalchemy import case, func, or_, select

from core.errors import ApiError, TooManyRequests
from core.settings import Settings
from core.tables import Batch, Dataset, ModelVersion, TrainingJob, UploadedFile, UserModel, utcnow

# Jobs whose folder (checkpoints, output) is still on disk.
JOBS_WITH_FILES = ("queued", "running")
ROOM_ADVICE = ("Delete datasets you no longer train on (DELETE /datasets/{id}) or models you no longer serve "
               "(DELETE /models/{name}) to make room.")


class QuotaExceeded(ApiError):
    status = 403


@dataclass(frozen=True)
class StoredUsage:
    """What an account's stored bytes are made of."""

    versions: int
    datasets: int
    jobs: int
    batches: int = 0

    @property
    def total(self) -> int:
        return self.versions + self.datasets + self.jobs + self.batches

    def describe(self) -> str:
        return (f"{readable_bytes(self.total)} ({readable_bytes(self.versions)} in model versions, "
                f"{readable_bytes(self.datasets)} in datasets, {readable_bytes(self.jobs)} in the checkpoints of "
                f"unfinished training jobs, {readable_bytes(self.batches)} in batches' files)")


def readable_bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def limit_bytes(config: Settings) -> int:
    return config.account_max_stored_mb * 2**20


def stored_usage(session, account_id: int, excluding_version: int | None = None,
                 excluding_dataset: str | None = None, excluding_job: str | None = None) -> StoredUsage:
    """Everything the account stores, as its rows record it; `excluding_*` leave
    out the one thing being measured anew."""
    versions = (select(func.coalesce(func.sum(ModelVersion.stored_bytes), 0))
                .join(UserModel, ModelVersion.model_id == UserModel.id)
                .where(UserModel.account_id == account_id))
    if excluding_version is not None:
        versions = versions.where(ModelVersion.id != excluding_version)
    # A dataset's measured folder; before it is measured (or in a database of an
    # older release, which did not measure), at least the file uploaded.
    dataset_bytes = case((Dataset.stored_bytes > Dataset.size_bytes, Dataset.stored_bytes), else_=Dataset.size_bytes)
    datasets = select(func.coalesce(func.sum(dataset_bytes), 0)).where(Dataset.account_id == account_id)
    if excluding_dataset is not None:
        datasets = datasets.where(Dataset.id != excluding_dataset)
    jobs = select(func.coalesce(func.sum(TrainingJob.stored_bytes), 0)).where(
        TrainingJob.account_id == account_id, TrainingJob.status.in_(JOBS_WITH_FILES))
    if excluding_job is not None:
        jobs = jobs.where(TrainingJob.id != excluding_job)
    batches = select(func.coalesce(func.sum(Batch.stored_bytes), 0)).where(Batch.account_id == account_id)
    files = select(func.coalesce(func.sum(UploadedFile.bytes), 0)).where(UploadedFile.account_id == account_id)
    return StoredUsage(int(session.scalar(versions)), int(session.scalar(datasets)), int(session.scalar(jobs)),
                       int(session.scalar(batches)) + int(session.scalar(files)))


def stored_bytes(session, account_id: int, excluding_version: int | None = None) -> int:
    return stored_usage(session, account_id, excluding_version=excluding_version).total


def check_room(session, config: Settings, account_id: int, what: str) -> None:
    """Before storing anything new (`what`: "upload a model", "create a dataset"...):
    403 when the account is at its limit already."""
    usage = stored_usage(session, account_id)
    limit = limit_bytes(config)
    if usage.total >= limit:
        raise QuotaExceeded(f"Cannot {what}: this account stores {usage.describe()}; the limit is "
                            f"{readable_bytes(limit)} (INFER_ACCOUNT_MAX_STORED_MB). {ROOM_ADVICE}")


def over_quota_message(config: Settings, usage: StoredUsage, what: str, new_bytes: int) -> str | None:
    """Why `new_bytes` more (what: "This version", "The parsed dataset"...) would
    take the account over its limit, given what else it stores; None if they fit."""
    limit = limit_bytes(config)
    if usage.total + new_bytes <= limit:
        return None
    return (f"{what} takes {readable_bytes(new_bytes)}, which would bring this account's stored data to "
            f"{readable_bytes(usage.total + new_bytes)}; the limit is {readable_bytes(limit)} "
            f"(INFER_ACCOUNT_MAX_STORED_MB), and the rest of the account takes {usage.describe()}. {ROOM_ADVICE}")


def check_new_upload(session, config: Settings, account_id: int, new_model: bool) -> None:
    """Before handing out an upload URL (or making a model for a training job)."""
    if new_model:
        limit = config.account_max_models
        count = session.scalar(select(func.count()).select_from(UserModel).where(UserModel.account_id == account_id))
        if count >= limit:
            raise QuotaExceeded(f"This account has {count} models; the limit is {limit} (INFER_ACCOUNT_MAX_MODELS). "
                                "Delete one, or upload a new version of an existing model.")
    limit = config.account_max_pending_uploads
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
    check_room(session, config, account_id, "upload a model")


def check_stored_bytes(session, config: Settings, version_id: int, new_bytes: int) -> None:
    """When a build knows what its version takes on disk."""
    version = session.get(ModelVersion, version_id)
    if version is None:
        return
    account_id = session.get(UserModel, version.model_id).account_id
    problem = over_quota_message(config, stored_usage(session, account_id, excluding_version=version_id),
                                 "This version", new_bytes)
    if problem:
        raise QuotaExceeded(problem)
