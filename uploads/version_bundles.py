"""A model version's built files in S3, so that every replica serves it.

With S3 storage, a successful build (uploads/builder.py) and a trained version
(training/jobs.py) put the version's files folder in the bucket as one tar
before the version is marked successful; the venv stays behind (it is made for
one host's paths and users). A replica asked for a version it lacks fetches the
bundle on first use, once: in one process the model cache's load-once already
makes concurrent first requests wait for one load, and a lock file per version
makes the replica's other worker processes wait for the same fetch. A version
whose format runs uploaded code gets its venv built from the fetched files on
that replica, by the same step as the build (uploads/venvs.py).

Whether a version has its files is the database's answer (stored_bytes, set to
0 when the policy of INFER_USER_MODEL_VERSIONS_KEPT removes them, with their
bundle), never one replica's disk; a replica drops the local copies of removed
versions as it notices them (forget_removed_versions).

With local storage none of this runs: one disk is the only copy.
"""

import logging
import os
import time

from sqlalchemy import select

from core.errors import ModelUnavailable
from core.settings import Settings
from core.tables import ModelVersion
from sandbox import SandboxUnavailable

from . import bundles
from .archive import remove_tree
from .formats import BuildFailed, named
from .formats.sandboxed import SandboxedCode
from .model_sandbox import RequirementsFailed
from .requirements_check import RequirementsRejected
from .serving import version_dirs
from .venvs import build_model_venv

log = logging.getLogger(__name__)

# A version's folder changed this lately is left alone by the sweep: a trained
# version's files are renamed into place just before its row is committed, so
# for that moment another thread finds files and no row.
RECENT_S = 600


def version_key(storage, version_id: int) -> str:
    return storage.named(f"versions/{version_id}/files.tar")


def _lock_dir(data_dir: str) -> str:
    return os.path.join(data_dir, "user_models", ".locks")


def store_version_files(config: Settings, storage, version_id: int, files_dir: str) -> None:
    """With S3 storage, put the version's files in the bucket; BuildFailed (which
    fails the build or the training job) when the bucket does not take them."""
    if not bundles.shared(storage):
        return
    try:
        bundles.store(storage, version_key(storage, version_id), files_dir, bundles.BundleLimits.from_config(config))
    except (bundles.BundleRejected, bundles.StorageUnreachable) as exc:
        raise BuildFailed(f"The version's files could not be stored for the other replicas. {exc}") from None


class _Unavailable(ModelUnavailable):
    """503: the version exists and should serve, but this replica cannot have its files now."""


def ensure_version_files(config: Settings, storage, model_sandbox, version_id: int, model_format: str,
                         label: str, with_venv: bool = True) -> None:
    """Make sure this replica has the version's files (and venv, for uploaded code,
    unless with_venv is False), fetching them from the bucket if not. `label`
    names the model and version in the 503 that says what is wrong."""
    if not bundles.shared(storage):
        return
    files_dir, venv_dir = version_dirs(config.data_dir, version_id)
    needs_venv = with_venv and isinstance(named(model_format), SandboxedCode)
    if os.path.isdir(files_dir) and (not needs_venv or os.path.isdir(venv_dir)):
        return
    with bundles.folder_lock(_lock_dir(config.data_dir), str(version_id)):
        try:
            _fetch(config, storage, version_id, files_dir, label)
            if needs_venv and not os.path.isdir(venv_dir):
                _build_venv(model_sandbox, version_id, files_dir, venv_dir, label)
        except bundles.StorageUnreachable as exc:
            raise _Unavailable(f"{label} is not on this replica yet and cannot be fetched. {exc}") from None
        except bundles.BundleRejected as exc:
            log.warning("bundle of model version %s refused: %s", version_id, exc)
            raise _Unavailable(f"{label}: its stored files were refused ({exc}); upload or train the model "
                               "again.") from None
        except OSError as exc:  # the data dir is full or not writable
            raise _Unavailable(f"{label} could not be written to this replica's data dir: {exc}") from None


def _fetch(config: Settings, storage, version_id: int, files_dir: str, label: str) -> None:
    if os.path.isdir(files_dir):  # another process fetched them while this one waited
        return
    os.makedirs(os.path.dirname(files_dir), exist_ok=True)
    key = version_key(storage, version_id)
    if not bundles.fetch(storage, key, files_dir, bundles.BundleLimits.from_config(config)):
        raise _Unavailable(f"{label} has no stored files in the S3 bucket ({key}), and "
                           "this replica has no copy: it was built before its files were kept in the bucket, or "
                           "they were removed there. Upload the model again to serve it on every replica.")
    log.info("fetched the files of model version %s from the bucket", version_id)


def _build_venv(model_sandbox, version_id: int, files_dir: str, venv_dir: str, label: str) -> None:
    try:
        model_sandbox.sandbox.require()
        output = build_model_venv(model_sandbox, version_id, files_dir, venv_dir)
    except (SandboxUnavailable, RequirementsFailed, RequirementsRejected) as exc:
        raise _Unavailable(f"{label} runs uploaded code, whose environment cannot be built on this replica: "
                           f"{exc}") from None
    log.info("built the environment of model version %s on this replica: %s", version_id, output.strip()[-200:])


def delete_version_bundles(storage, version_ids: list[int]) -> None:
    """Delete these versions' bundles (a missing one is no error); StorageUnreachable
    when the bucket does not answer."""
    if not bundles.shared(storage):
        return
    for version_id in version_ids:
        bundles.delete(storage, version_key(storage, version_id))


def _changed_lately(folder: str) -> bool:
    try:
        return time.time() - os.stat(folder).st_mtime < RECENT_S
    except FileNotFoundError:
        return True  # gone already


def forget_removed_versions(sessions, data_dir: str, storage, in_use: set[int]) -> list[int]:
    """Remove this replica's copies of versions that another replica removed (the
    policy of INFER_USER_MODEL_VERSIONS_KEPT) or deleted, leaving those in `in_use`
    (loaded here) and any another process is fetching."""
    if not bundles.shared(storage):
        return []
    root = os.path.join(data_dir, "user_models")
    try:
        local = {int(name) for name in os.listdir(root) if name.isdigit()} - in_use
    except FileNotFoundError:
        return []
    if not local:
        return []
    with sessions() as session:
        kept = set(session.scalars(select(ModelVersion.id).where(
            ModelVersion.id.in_(local),
            (ModelVersion.status != "success") | (ModelVersion.stored_bytes > 0))).all())
    removed = []
    for version_id in sorted(local - kept):
        folder = os.path.dirname(version_dirs(data_dir, version_id)[0])
        if _changed_lately(folder):
            continue
        with bundles.folder_lock(_lock_dir(data_dir), str(version_id), wait=False) as held:
            if held:
                remove_tree(folder)
                removed.append(version_id)
    return removed


def discard_version_bundle(storage, version_id: int) -> None:
    """For a version deleted while it was built or trained: its bundle, put in the
    bucket just before, goes (a bucket that does not answer leaves it, logged)."""
    try:
        delete_version_bundles(storage, [version_id])
    except bundles.StorageUnreachable as exc:
        log.warning("the bundle of deleted model version %s stays in the bucket: %s", version_id, exc)


def delete_model_bundles(storage, versions: list[ModelVersion], model_name: str) -> None:
    """Before a model is deleted: its versions' bundles; a 503 (and the model
    stays) when the bucket does not answer, so that no bundle outlives its model."""
    try:
        delete_version_bundles(storage, [v.id for v in versions if v.status == "success" and v.stored_bytes])
    except bundles.StorageUnreachable as exc:
        raise _Unavailable(f"Model {model_name!r} was not deleted: its stored files could not be removed. "
                           f"{exc}") from None
