"""An account's datasets: list, read, create (from data sent, or an upload URL), delete.
(Editing one, which makes a new revision: dataset_edits.py.)

A dataset is parsed in the background once its file is here (training/jobs.py
runs training/datasets/child.py): processing -> ready | failed, with a parse log.
"""

import os
from datetime import timedelta
from typing import BinaryIO

from sqlalchemy import func, select

from core.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from core.tables import Dataset, Evaluation, TrainingJob, owned, utcnow
from training.dataset_bundles import discard_parsed_dataset, share_direct_upload
from training.paths import dataset_dir, dataset_source, new_id, revisions_root
from training.records import log_line
from uploads.archive import remove_tree
from uploads.quotas import QuotaExceeded, check_room

from .account import ServiceContext

UPLOAD_URL_LIFETIME = timedelta(hours=1)


def find(db, account_id: int, dataset_id: str) -> Dataset:
    """The account's dataset; another account's answers exactly as a missing one."""
    dataset = owned(db, Dataset, dataset_id, account_id)
    if dataset is None:
        raise NotFound(f"Dataset {dataset_id!r} not found; GET /datasets lists yours.")
    return dataset


def get(ctx: ServiceContext, dataset_id: str) -> Dataset:
    return find(ctx.db, ctx.account_id, dataset_id)


def ready(ctx: ServiceContext, dataset_id: str) -> Dataset:
    """The account's dataset, parsed and ready to be read (409 saying why not)."""
    dataset = get(ctx, dataset_id)
    if dataset.status != "ready":
        raise Conflict(f"Dataset {dataset_id} failed to parse: {dataset.message}." if dataset.status == "failed"
                       else f"Dataset {dataset_id} is {dataset.status}; wait until it is ready.")
    return dataset


def listed(ctx: ServiceContext) -> list[Dataset]:
    """The account's datasets, newest first."""
    return list(ctx.db.scalars(select(Dataset).where(Dataset.account_id == ctx.account_id)
                               .order_by(Dataset.created_at.desc(), Dataset.id)).all())


def create(ctx: ServiceContext, fields: dict, data: str | None = None, file: BinaryIO | None = None,
           upload: bool = False) -> tuple[Dataset, str | None]:
    """A new dataset of the account, from exactly one of: `data` (CSV or JSONL text),
    `file` (a stream of the file) or `upload` (an upload URL, handed back, that takes
    a PUT of the file for an hour). `fields`: name, format, label_column, text_column
    (as POST /datasets reads them). The dataset and its upload URL, if any."""
    if sum([data is not None, file is not None, upload]) != 1:
        raise BadRequest("Send exactly one of: \"data\" (the CSV or JSONL text), a multipart \"file\", "
                         "or \"upload\": true for an upload URL.")
    config, account_id = ctx.config, ctx.account_id
    count = ctx.db.scalar(select(func.count()).select_from(Dataset).where(Dataset.account_id == account_id))
    if count >= config.account_max_datasets:
        raise QuotaExceeded(f"This account has {count} datasets; the limit is {config.account_max_datasets} "
                            "(INFER_ACCOUNT_MAX_DATASETS). Delete one first.")
    check_room(ctx.db, config, account_id, "create a dataset")
    options = {key: fields[key] for key in ("label_column", "text_column") if fields.get(key)}
    dataset = Dataset(id=new_id("ds"), account_id=account_id, name=fields.get("name") or "dataset",
                      format=fields.get("format") or "", options=options, parse_log=[])
    os.makedirs(dataset_dir(config.data_dir, dataset.id))
    upload_url = None
    if upload:
        expires = utcnow() + UPLOAD_URL_LIFETIME
        dataset.status, dataset.upload_expires_at = "awaiting_upload", expires
        dataset.parse_log = [log_line("Waiting for the upload.")]
        upload_url = _upload_url(ctx, dataset.id, int(expires.timestamp()))
    else:
        dataset.size_bytes = _save_direct(data, file, dataset_source(config.data_dir, dataset.id),
                                          config.dataset_max_direct_bytes)
        share_direct_upload(ctx.part("storage"), dataset.id, config.data_dir)  # S3: any parser
        dataset.parse_log = [log_line(f"Received {dataset.size_bytes} bytes; waiting in the queue.")]
    ctx.db.add(dataset)
    ctx.db.commit()
    ctx.part("work").submit("parse", dataset.id)
    return dataset, upload_url


def _save_direct(data: str | None, file: BinaryIO | None, path: str, limit: int) -> int:
    if data is not None:
        encoded = data.encode("utf-8")
        if len(encoded) > limit:
            raise PayloadTooLarge(f"The data is {len(encoded)} bytes; send at most {limit} in the request "
                                  "(INFER_DATASET_MAX_DIRECT_BYTES), or ask for an upload URL with \"upload\": true.")
        with open(path, "wb") as out:
            out.write(encoded)
    else:
        _copy_within(file, path, limit)
    size = os.path.getsize(path)
    if size == 0:
        remove_tree(os.path.dirname(path))
        raise BadRequest("The dataset is empty: send its rows.")
    return size


def _copy_within(file: BinaryIO, path: str, limit: int) -> None:
    """Write the stream to `path`, refusing it past `limit` bytes (the API's request
    has that limit already; a caller with a larger one, the web UI's form, has not)."""
    written = 0
    with open(path, "wb") as out:
        while chunk := file.read(1 << 20):
            written += len(chunk)
            if written > limit:
                break
            out.write(chunk)
    if written > limit:
        remove_tree(os.path.dirname(path))
        raise PayloadTooLarge(f"The file is over {limit} bytes, the most a dataset sent in a request may have "
                              "(INFER_DATASET_MAX_DIRECT_BYTES); ask for an upload URL with \"upload\": true.")


def _upload_url(ctx: ServiceContext, dataset_id: str, expires: int) -> str:
    storage = ctx.part("storage")
    if storage.kind == "s3":
        return storage.upload_url(0, expires, "", key=storage.dataset_key(dataset_id))
    return storage.upload_url(dataset_id, expires, ctx.base_url, route="dataset-uploads")


def delete(ctx: ServiceContext, dataset_id: str) -> None:
    """Delete the account's dataset and its files (not while a queued or running job
    trains on it, or an evaluation reads it)."""
    dataset = get(ctx, dataset_id)
    in_use = ctx.db.scalar(select(TrainingJob.id).where(
        (TrainingJob.dataset_id == dataset.id) | (TrainingJob.validation_dataset_id == dataset.id)
        | (TrainingJob.test_dataset_id == dataset.id),
        TrainingJob.status.in_(("queued", "running"))).limit(1))
    if in_use:
        raise Conflict(f"Job {in_use} trains on this dataset; cancel it (POST /jobs/{in_use}/cancel) or let it "
                       "finish before deleting the dataset.")
    read_by = ctx.db.scalar(select(Evaluation.id).where(
        Evaluation.dataset_id == dataset.id, Evaluation.status.in_(("queued", "running"))).limit(1))
    if read_by:
        raise Conflict(f"Evaluation {read_by} reads this dataset; cancel it (POST /evaluations/{read_by}/cancel) or "
                       "let it finish before deleting the dataset.")
    revisions = dataset.revision or 1
    ctx.db.delete(dataset)  # its revisions' rows go with it (ON DELETE CASCADE)
    ctx.db.commit()
    remove_tree(dataset_dir(ctx.config.data_dir, dataset_id))
    remove_tree(revisions_root(ctx.config.data_dir, dataset_id))
    storage = ctx.part("storage")
    if storage.kind == "s3":
        storage.delete(0, key=storage.dataset_key(dataset_id))
    discard_parsed_dataset(storage, dataset_id, revisions)  # S3: its parsed files, kept for the other replicas
