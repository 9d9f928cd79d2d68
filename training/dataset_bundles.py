"""A parsed dataset in S3, so that a training job runs on any replica.

With S3 storage, the replica that parses a dataset puts the parsed folder (its
rows, and an image dataset's images) in the bucket before the dataset is marked
ready; the uploaded file stays out (the bucket holds it already, and training
never reads it). A job claimed by a replica that lacks the parsed folder fetches
it first, checked as every bundle is (uploads/bundles.py), under a lock per
dataset. With local storage none of this runs.
"""

import logging
import os
import shutil

from core.errors import ApiError
from core.settings import Settings
from uploads import bundles

from .paths import dataset_dir, dataset_source, revision_dir

log = logging.getLogger(__name__)

# Written last by the parser: a folder holding it is a complete parse.
PARSED_MARK = "parse_result.json"
LEFT_OUT = ("source",)


class StoreUnavailable(ApiError):
    """503: the bucket did not take a dataset sent in the request."""

    status = 503


class DatasetUnavailable(LookupError):
    """A job's dataset cannot be had on this replica (the job fails with this message)."""


def parsed_key(storage, dataset_id: str, revision: int = 1) -> str:
    # Not under datasets/<id>: that key is the upload's, which its owner's upload URL can write.
    suffix = "" if revision == 1 else f"@{int(revision)}"  # an edited revision (training/datasets/revisions.py)
    return storage.named(f"parsed-datasets/{dataset_id}{suffix}.tar")


def share_direct_upload(storage, dataset_id: str, data_dir: str) -> None:
    """A dataset sent in the request body: into the bucket, where the upload URL
    would have put it, for whichever replica or worker parses it (503 when the
    bucket does not answer)."""
    if not bundles.shared(storage):
        return
    try:
        with bundles.storage_errors(f"storing dataset {dataset_id}"):
            storage.put_file(storage.dataset_key(dataset_id), dataset_source(data_dir, dataset_id))
    except bundles.StorageUnreachable as exc:
        shutil.rmtree(dataset_dir(data_dir, dataset_id), ignore_errors=True)
        raise StoreUnavailable(f"The dataset was not created. {exc}") from None


def store_parsed_dataset(config: Settings, storage, dataset_id: str, outcome) -> None:  # a ParseOutcome
    """After a parse that made the dataset ready: its parsed folder to the bucket.
    A failure raises, and the caller records the dataset as failed with it."""
    if not bundles.shared(storage) or outcome.status != "ready":
        return
    folder = dataset_dir(config.data_dir, dataset_id)
    try:
        bundles.store(storage, parsed_key(storage, dataset_id), folder, bundles.BundleLimits.from_config(config),
                      LEFT_OUT)
    except bundles.BundleRejected as exc:
        raise DatasetUnavailable(f"The parsed dataset could not be stored for the other replicas: {exc}") from None


def ensure_parsed_datasets(config: Settings, storage, *dataset_ids: str | None) -> None:
    """Before a job trains on them: its datasets (training, validation) on this
    replica, fetched if missing. DatasetUnavailable says what is wrong."""
    for dataset_id in dataset_ids:
        if dataset_id is not None and bundles.shared(storage):
            _ensure(config, storage, dataset_id, 1)


def ensure_parsed_revision(config: Settings, storage, dataset_id: str, revision: int) -> None:
    """One revision of a dataset on this replica (to train on it, or edit it), fetched if missing."""
    if bundles.shared(storage):
        _ensure(config, storage, dataset_id, revision)


def store_parsed_revision(config: Settings, storage, dataset_id: str, revision: int) -> None:
    """An edited revision's folder to the bucket, before the edit is recorded.
    A failure raises DatasetUnavailable (the edit is not made)."""
    if not bundles.shared(storage):
        return
    try:
        bundles.store(storage, parsed_key(storage, dataset_id, revision),
                      revision_dir(config.data_dir, dataset_id, revision), bundles.BundleLimits.from_config(config))
    except (bundles.BundleRejected, bundles.StorageUnreachable) as exc:
        raise DatasetUnavailable(f"The revision could not be stored for the other replicas: {exc}") from None


def _ensure(config: Settings, storage, dataset_id: str, revision: int) -> None:
    folder = revision_dir(config.data_dir, dataset_id, revision)
    if os.path.isfile(os.path.join(folder, PARSED_MARK)):
        return
    lock_dir = os.path.join(config.data_dir, "datasets", ".locks")
    with bundles.folder_lock(lock_dir, dataset_id if revision == 1 else f"{dataset_id}@{revision}"):
        if os.path.isfile(os.path.join(folder, PARSED_MARK)):  # another process fetched it meanwhile
            return
        key = parsed_key(storage, dataset_id, revision)
        try:
            found = bundles.fetch(storage, key, folder, bundles.BundleLimits.from_config(config))
        except bundles.StorageUnreachable as exc:
            raise DatasetUnavailable(f"Dataset {dataset_id} was parsed on another replica and cannot be fetched "
                                     f"now. {exc} Start the job again once the store answers.") from None
        except bundles.BundleRejected as exc:
            raise DatasetUnavailable(f"Dataset {dataset_id}'s parsed files were refused ({exc}); upload the "
                                     "dataset again.") from None
        except OSError as exc:  # the data dir is full or not writable
            raise DatasetUnavailable(f"Dataset {dataset_id} could not be written to this replica's data dir: "
                                     f"{exc}") from None
        if not found:
            raise DatasetUnavailable(f"Dataset {dataset_id} was parsed on another replica, and its parsed files "
                                     f"are not in the S3 bucket ({key}); upload the dataset again.")
        if not os.path.isfile(os.path.join(folder, PARSED_MARK)):
            raise DatasetUnavailable(f"Dataset {dataset_id}'s stored files are not a complete parse; upload the "
                                     "dataset again.")
        log.info("fetched parsed dataset %s from the bucket", dataset_id)


def delete_parsed_dataset(storage, dataset_id: str, revisions: int = 1) -> None:
    """With the dataset, each of its revisions (a bucket that does not answer: StorageUnreachable)."""
    if bundles.shared(storage):
        for revision in range(1, revisions + 1):
            bundles.delete(storage, parsed_key(storage, dataset_id, revision))


def discard_parsed_dataset(storage, dataset_id: str, revisions: int = 1) -> None:
    """For a dataset deleted (or deleted while it was parsed): what was stored goes (logged if it cannot)."""
    try:
        delete_parsed_dataset(storage, dataset_id, revisions)
    except bundles.StorageUnreachable as exc:
        log.warning("the parsed files of deleted dataset %s stay in the bucket: %s", dataset_id, exc)
