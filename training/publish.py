"""A training job's last step: the files its child trained become the model's
next version, which serves (training/jobs.py runs this on a "result")."""

import os
import shutil

from core.settings import Settings
from core.tables import TrainingJob, UserModel, utcnow
from uploads.archive import tree_bytes
from uploads.quotas import over_quota_message, stored_usage
from uploads.serving import version_dirs
from uploads.version_bundles import store_version_files
from uploads.versions import add_numbered_version, remove_old_versions, serve_if_newest

from .records import JobRecord
from .sandboxed import ChildSandbox, UnsafeOutput


def publish_version(config: Settings, sessions, storage, children: ChildSandbox, job_id: str, folder: str,
                    record: JobRecord) -> None:
    """Record the job's outcome: succeeded with its new version, or failed saying why."""
    result = record.result
    output = os.path.join(folder, "output")
    try:
        children.reclaim(output)  # served from now on: only files and folders, the service's own
    except UnsafeOutput as exc:
        record.finish("failed", f"The training process left an output the service cannot use ({exc}).")
        shutil.rmtree(folder, ignore_errors=True)
        return
    stored = tree_bytes(output)
    with sessions() as session:
        job = session.get(TrainingJob, job_id)
        model = session.get(UserModel, job.model_id) if job is not None else None
        if job is None or model is None:
            shutil.rmtree(folder, ignore_errors=True)
            return
        # The job's own folder (these files among them) leaves the count as the version enters it.
        problem = over_quota_message(config, stored_usage(session, job.account_id, excluding_job=job_id),
                                     "The trained version", stored)
        if problem:
            record.finish("failed", problem)
            shutil.rmtree(folder, ignore_errors=True)
            return
        version = add_numbered_version(
            session, model.id, status="building", format=result.format, tasks=list(result.tasks),
            description=result.description or f"Trained by {job_id}.", upload_expires_at=utcnow(),
            source="training", job_id=job_id, dataset_id=job.dataset_id, metrics=_version_metrics(result),
            parent=job.parent, build_message="", build_log="")
        store_version_files(config, storage, version.id, output)  # for the other replicas (S3)
        files_dir = version_dirs(config.data_dir, version.id)[0]
        os.makedirs(os.path.dirname(files_dir), exist_ok=True)
        os.rename(output, files_dir)
        version.status, version.stored_bytes, version.finished_at = "success", stored, utcnow()
        version.build_message = f"Trained by job {job_id}; best epoch {result.best_epoch}." + (
            f" Kept on from {job.parent['model']}@{job.parent['version']}: {result.continued}." if job.parent else "")
        serve_if_newest(session, model, version, "training")
        job.version_number = version.number
        job.test_metrics = result.test_metrics
        session.commit()
        model_id, number = model.id, version.number
    shutil.rmtree(folder, ignore_errors=True)  # checkpoints are no use once the version exists
    record.finish("succeeded", f"Trained version {number} of {record.model_name}; it serves now.",
                  best_epoch=result.best_epoch, metrics=result.metrics,
                  samples_per_second=result.samples_per_second)
    remove_old_versions(sessions, config.data_dir, config.user_model_versions_kept, model_id, storage)


def _version_metrics(result) -> dict | None:
    """The kept epoch's statistics, with the test dataset's metrics as test_<metric>."""
    if not result.test_metrics:
        return result.metrics
    return {**(result.metrics or {}), **{f"test_{key}": value for key, value in result.test_metrics.items()}}
