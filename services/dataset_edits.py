"""Editing an account's dataset: add samples, remove samples by id or uid, remove
a class. Each edit makes a new revision (the same id, revision + 1); the
earlier ones stay readable and trainable (training/datasets/revisions.py).

An edit is checked as an upload is (rows, line bytes, labels, image pixels;
INFER_DATASET_EDIT_MAX_SAMPLES, INFER_DATASET_EDIT_MAX_URLS and
INFER_DATASET_IMAGE_MAX_BYTES besides) and
written in full to a folder of its own before it is recorded. Two edits at once
do not lose one: recording an edit is a conditional UPDATE of the dataset's
revision (the one it started from), so of two edits of revision n one becomes
n + 1 and the other starts again from n + 1, up to EDIT_ATTEMPTS times. A
dataset still processing (parsing) cannot be edited: 409.
"""

import base64
import binascii
import os
import shutil
import tempfile

from sqlalchemy import select, update

from core.errors import ApiError, Conflict, InvalidInput, NotFound
from core.tables import Dataset, DatasetRevision
from predictions.url_fetch import FetchFailed, fetch
from training.dataset_bundles import DatasetUnavailable, ensure_parsed_revision, store_parsed_revision
from training.datasets import DatasetLimits
from training.datasets.revisions import Edit, SamplesMissing, read_samples, write_revision
from training.datasets.samples import SampleRejected, check_uid, checked_sample
from training.paths import dataset_dir, revision_dir, revisions_root
from uploads.archive import tree_bytes
from uploads.bundles import folder_lock
from uploads.quotas import QuotaExceeded, check_room, over_quota_message, stored_usage

from .account import ServiceContext
from .datasets import find

# Tries of an edit that another edit of the same dataset overtook each time.
EDIT_ATTEMPTS = 5
MAX_SAMPLES_PAGE = 100


class DatasetStoreUnavailable(ApiError):
    """503: an edited revision could not be fetched or stored (S3)."""

    status = 503


def _invalid(field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"Invalid request. {field}: {problem}", errors={field: [problem]})


def _limits(config) -> DatasetLimits:
    return DatasetLimits(max_rows=config.dataset_max_rows, max_line_bytes=config.dataset_max_line_bytes,
                         max_image_pixels=config.max_image_pixels, max_label_count=config.dataset_max_labels,
                         archive=None)


def add_samples(ctx: ServiceContext, dataset_id: str, samples: list) -> tuple[DatasetRevision, list[str]]:
    """Add samples in the dataset's format (a new label makes a new class): the new
    revision and the ids the samples were given, in the order sent."""
    dataset = _editable(ctx, dataset_id)
    most = ctx.config.dataset_edit_max_samples
    if not samples:
        raise _invalid("samples", "send at least one sample.")
    if len(samples) > most:
        raise _invalid("samples", f"{len(samples)} samples; one edit adds at most {most} "
                                  "(INFER_DATASET_EDIT_MAX_SAMPLES). Send them in several edits.")
    urls = sum(1 for sample in samples if isinstance(sample, dict) and sample.get("image_url") is not None)
    if urls > ctx.config.dataset_edit_max_urls:
        raise _invalid("samples", f"{urls} images by URL; one edit fetches at most {ctx.config.dataset_edit_max_urls} "
                                  "(INFER_DATASET_EDIT_MAX_URLS). Send the others in later edits, or as base64.")
    rows, images = [], []
    for number, sample in enumerate(samples, 1):
        try:
            row, _ = checked_sample(dataset.format, sample, number, dataset.stats or {},
                                    ctx.config.dataset_max_line_bytes)
        except SampleRejected as exc:
            raise _invalid("samples", str(exc)) from None
        rows.append(row)
        images.append(_image_bytes(ctx, sample, number) if dataset.format == "image-folders" else None)
    revision, result = _edit(ctx, dataset_id, Edit(add=rows, images=images))
    return revision, result["added_ids"]


def remove_samples(ctx: ServiceContext, dataset_id: str, ids: list, uids: list) -> DatasetRevision:
    """Remove samples by id or by the caller's uid (all of them exist, or nothing changes: 404)."""
    _editable(ctx, dataset_id)
    if not ids and not uids:
        raise _invalid("ids", "send the ids or uids of the samples to remove.")
    most = ctx.config.dataset_edit_max_samples
    if len(ids) + len(uids) > most:
        raise _invalid("ids", f"{len(ids) + len(uids)} samples; one edit removes at most {most} "
                              "(INFER_DATASET_EDIT_MAX_SAMPLES).")
    for number, uid in enumerate(uids, 1):
        try:
            check_uid(uid, f"uids[{number - 1}]")
        except SampleRejected as exc:
            raise _invalid("uids", str(exc)) from None
    return _edit(ctx, dataset_id, Edit(remove_ids=frozenset(ids), remove_uids=frozenset(uids)))[0]


def remove_class(ctx: ServiceContext, dataset_id: str, label: str) -> DatasetRevision:
    """Remove every sample of a class (at least two classes must stay)."""
    _editable(ctx, dataset_id)
    return _edit(ctx, dataset_id, Edit(remove_label=label))[0]


def _editable(ctx: ServiceContext, dataset_id: str) -> Dataset:
    dataset = find(ctx.db, ctx.account_id, dataset_id)
    if dataset.status != "ready":
        why = (f"failed to parse ({dataset.message})" if dataset.status == "failed"
               else f"is {dataset.status}; edit it once it is ready")
        raise Conflict(f"Dataset {dataset_id} {why}.")
    return dataset


def _image_bytes(ctx: ServiceContext, sample: dict, number: int) -> bytes:
    """The image of sample `number`: its base64 `image`, or what its `image_url` answers."""
    limit = ctx.config.dataset_image_max_bytes
    encoded, url = sample.get("image"), sample.get("image_url")
    if (encoded is None) == (url is None):
        raise _invalid("samples", f"Sample {number}: send the image as base64 in \"image\" or its URL in "
                                  "\"image_url\" (one of them).")
    if encoded is not None:
        if not isinstance(encoded, str):
            raise _invalid("samples", f"Sample {number}: image must be base64 text.")
        if len(encoded) > limit * 4 // 3 + 4:
            raise _invalid("samples", f"Sample {number}: the image is over {limit} bytes "
                                      "(INFER_DATASET_IMAGE_MAX_BYTES).")
        try:
            return base64.b64decode(encoded.split(",", 1)[-1] if encoded.startswith("data:") else encoded,
                                    validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("samples", f"Sample {number}: image is not valid base64.") from None
    if not isinstance(url, str):
        raise _invalid("samples", f"Sample {number}: image_url must be an http:// or https:// URL.")
    try:
        return fetch(url, ctx.config, limit)
    except FetchFailed as exc:
        raise _invalid("samples", f"Sample {number}: image_url: {exc}.") from None


def _edit(ctx: ServiceContext, dataset_id: str, edit: Edit) -> tuple[DatasetRevision, dict]:
    config = ctx.config
    # The edits of one dataset on this host one at a time (they would only
    # overtake each other); across replicas the conditional UPDATE decides.
    with folder_lock(os.path.join(config.data_dir, "datasets", ".locks"), f"{dataset_id}.edit"):
        for _ in range(EDIT_ATTEMPTS):
            made = _attempt(ctx, dataset_id, edit)
            if made is not None:
                return made
    raise Conflict(f"Dataset {dataset_id} was edited by other requests while this edit was made, "
                   f"{EDIT_ATTEMPTS} times; send it again.")


def _attempt(ctx: ServiceContext, dataset_id: str, edit: Edit) -> tuple[DatasetRevision, dict] | None:
    """One try at the edit, from the latest revision: None when another edit overtook it."""
    config, db = ctx.config, ctx.db
    storage = ctx.part("storage")
    db.expire_all()  # the dataset as it is now, not as this session last read it
    dataset = _editable(ctx, dataset_id)
    base = dataset.revision or 1
    if base >= config.dataset_max_revisions:
        raise Conflict(f"Dataset {dataset_id} has {base} revisions, the most one dataset may have "
                       "(INFER_DATASET_MAX_REVISIONS); upload its latest rows as a new dataset.")
    check_room(db, config, ctx.account_id, "edit a dataset")
    try:
        ensure_parsed_revision(config, storage, dataset_id, base)
    except DatasetUnavailable as exc:
        raise DatasetStoreUnavailable(str(exc)) from None
    root = revisions_root(config.data_dir, dataset_id)
    os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".edit-", dir=root)
    try:
        result = _write(config, dataset, base, edit, os.path.join(work, "rows"))
        measured = _within_quota(ctx, dataset)
        revision = _record(ctx, dataset, base, edit, result, os.path.join(work, "rows"), measured)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return None if revision is None else (revision, result)


def _write(config, dataset: Dataset, base: int, edit: Edit, folder: str) -> dict:
    base_dir = revision_dir(config.data_dir, dataset.id, base)
    try:
        return write_revision(base_dir, folder, dataset.format, dataset.stats or {}, edit, _limits(config), base + 1)
    except SamplesMissing as exc:
        raise NotFound(str(exc).replace("{id}", dataset.id)) from None
    except SampleRejected as exc:
        raise _invalid("samples" if edit.add else "ids" if not edit.remove_label else "label", str(exc)) from None


def _within_quota(ctx: ServiceContext, dataset: Dataset) -> int:
    """The bytes the dataset takes with the revision just written (all its
    revisions, its upload); 403 when they would take the account over its quota."""
    config = ctx.config
    measured = tree_bytes(dataset_dir(config.data_dir, dataset.id)) + tree_bytes(
        revisions_root(config.data_dir, dataset.id))
    problem = over_quota_message(config, stored_usage(ctx.db, ctx.account_id, excluding_dataset=dataset.id),
                                 "This dataset with the new revision", measured)
    if problem:
        raise QuotaExceeded(f"The edit was not made: {problem}")
    return measured


def _record(ctx: ServiceContext, dataset: Dataset, base: int, edit: Edit, result: dict,
            folder: str, measured: int) -> DatasetRevision | None:
    """Make the written revision the dataset's latest, if no other edit did first
    (None then: the caller starts again from the new latest)."""
    config, db = ctx.config, ctx.db
    stats = {key: value for key, value in result.items() if key not in ("added_ids", "removed")}
    uploaded_stats = dataset.stats  # read before the UPDATE, which may refresh the object
    claimed = db.execute(update(Dataset).where(Dataset.id == dataset.id, Dataset.revision == base,
                                               Dataset.status == "ready")
                         .values(revision=base + 1, stats=stats))
    if claimed.rowcount != 1:
        db.rollback()
        return None
    if base == 1 and db.scalar(select(DatasetRevision.id).where(DatasetRevision.dataset_id == dataset.id,
                                                                DatasetRevision.revision == 1)) is None:
        db.add(DatasetRevision(dataset_id=dataset.id, revision=1, change={"kind": "upload"}, stats=uploaded_stats,
                               created_at=dataset.finished_at or dataset.created_at))
    change = {"kind": edit.kind(), "added": len(result["added_ids"]), "removed": result["removed"]}
    if edit.remove_label is not None:
        change["label"] = edit.remove_label
    revision = DatasetRevision(dataset_id=dataset.id, revision=base + 1, change=change, stats=stats)
    db.add(revision)
    final = revision_dir(config.data_dir, dataset.id, base + 1)
    shutil.rmtree(final, ignore_errors=True)  # what an edit that was never recorded left (its process died)
    os.replace(folder, final)
    try:
        store_parsed_revision(config, ctx.part("storage"), dataset.id, base + 1)  # for the other replicas (S3)
        db.execute(update(Dataset).where(Dataset.id == dataset.id).values(stored_bytes=measured))
        db.commit()
    except BaseException as exc:
        db.rollback()
        shutil.rmtree(final, ignore_errors=True)
        if isinstance(exc, DatasetUnavailable):
            raise DatasetStoreUnavailable(f"The edit was not made: {exc}") from None
        raise
    return revision


def revisions(ctx: ServiceContext, dataset_id: str) -> list[DatasetRevision]:
    """The dataset's revisions, oldest first (one, the upload's, until it is edited)."""
    dataset = find(ctx.db, ctx.account_id, dataset_id)
    rows = list(ctx.db.scalars(select(DatasetRevision).where(DatasetRevision.dataset_id == dataset.id)
                               .order_by(DatasetRevision.revision)).all())
    if not rows:
        rows = [DatasetRevision(dataset_id=dataset.id, revision=1, change={"kind": "upload"}, stats=dataset.stats,
                                created_at=dataset.finished_at or dataset.created_at)]
    return rows


def chosen_revision(ctx: ServiceContext, dataset: Dataset, pinned: int | None,
                    field: str = "dataset_revision") -> tuple[int, dict | None]:
    """(the revision a job or an evaluation reads: the one sent, else the latest; its statistics)."""
    latest = dataset.revision or 1
    if pinned is None or pinned == latest:
        return latest, dataset.stats
    if not 1 <= pinned <= latest:
        raise _invalid(field, f"dataset {dataset.id} has revisions 1 to {latest}.")
    return pinned, revision(ctx, dataset.id, pinned).stats


def revision(ctx: ServiceContext, dataset_id: str, number: int) -> DatasetRevision:
    """One revision of the dataset; 404 when it has none of that number."""
    for row in revisions(ctx, dataset_id):
        if row.revision == number:
            return row
    raise NotFound(f"Dataset {dataset_id} has no revision {number}; GET /datasets/{dataset_id}/revisions lists them.")


def samples(ctx: ServiceContext, dataset_id: str, number: int | None, offset: int,
            limit: int) -> tuple[int, list[dict], int]:
    """(the revision, a page of its samples with their ids, how many it has)."""
    dataset = find(ctx.db, ctx.account_id, dataset_id)
    if dataset.status != "ready":
        raise Conflict(f"Dataset {dataset_id} is {dataset.status}: it has no samples to list.")
    number = number or dataset.revision or 1
    revision(ctx, dataset_id, number)  # 404 for a revision it does not have
    try:
        ensure_parsed_revision(ctx.config, ctx.part("storage"), dataset_id, number)
    except DatasetUnavailable as exc:
        raise DatasetStoreUnavailable(str(exc)) from None
    page, total = read_samples(revision_dir(ctx.config.data_dir, dataset_id, number), offset,
                               min(limit, MAX_SAMPLES_PAGE))
    return number, page, total
