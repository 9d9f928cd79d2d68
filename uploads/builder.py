"""Build jobs: turn an uploaded archive into a serving model version.

Jobs live in the database (model_versions.status), so a restart loses none: a
build whose process died keeps its row in `building` with a lease that stops
being renewed, and the next process to look takes it over. The claim, the lease,
the loop and the hand-back are core/runner.py's, as for every kind of background
work: every process runs one build at a time, claimed fairly between accounts,
at most INFER_ACCOUNT_MAX_RUNNING_BUILDS of one account at once (core/fair_claims.py).

A build: fetch the archive; check and extract it; read config.json; detect the
upload's format, which does its own part (uploads/formats: for code, its
requirements.txt installed in the sandbox) and loads the model; run each
declared task once on a sample, checking the output's shape. Success makes the
version current; a failure records why (with the log's tail) and leaves the
previous version serving.

What the account reads of a failure is said in its own terms (uploads/build_errors.py):
a sentence naming the failing step, their exception and their file and line; a log
with their traceback, their model's output and pip's, and none of the service's
paths, frames or internal names.
"""

import json
import logging
import os
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import join

from core.fair_claims import FairClaims, WorkKind, leased
from core.runner import Runner
from core.settings import Settings
from core.tables import ModelVersion, UserModel, utcnow
from core.webhook_events import notify
from model_registry.loaders import LoadSettings
from model_registry.loaders.common import MissingWeights
from sandbox import SandboxUnavailable
from tasks.spec import TASK_SPECS, task_spec  # importing tasks registers every task's spec

from .archive import ArchiveLimits, ArchiveRejected, extract_archive, model_root, remove_tree, tree_bytes
from .build_errors import Scrubber, requirements_message, service_error_message, worker_log, worker_message
from .formats import BuildFailed, Version, detect
from .model_sandbox import RequirementsFailed
from .quotas import QuotaExceeded, check_stored_bytes
from .requirements_check import RequirementsRejected
from .serving import version_dirs
from .storage import UploadTooLarge
from .version_bundles import discard_version_bundle, store_version_files
from .versions import remove_old_versions, serve_if_newest
from .worker_client import WorkerFailed, WorkerTimeout

log = logging.getLogger(__name__)

# The build log keeps its end: the failure is what an author reads it for.
LOG_KEPT_CHARS = 64_000


def _build_due(now):
    return or_(ModelVersion.status == "queued",
               (ModelVersion.status == "building") & (ModelVersion.lease_until < now))


# A version reaches its account through its model.
BUILDS = WorkKind(ModelVersion, due=_build_due, running=leased("building"), oldest_first=ModelVersion.id,
                  account_of=lambda rows: (join(rows, UserModel, rows.model_id == UserModel.id), UserModel.account_id))


def known_tasks() -> list[str]:
    """The tasks a model may declare: every registered task spec, as it stands now."""
    return sorted(TASK_SPECS)


def read_model_config(files_dir: str, max_bytes: int) -> dict:
    path = os.path.join(files_dir, "config.json")
    if not os.path.isfile(path):
        raise BuildFailed("config.json is missing: the archive must hold config.json with a description and tasks.")
    # Parsed in the service's own process, where a JSON file takes several times its size.
    if os.path.getsize(path) > max_bytes:
        raise BuildFailed(f"config.json is over {max_bytes // 1024} KiB (INFER_UPLOAD_MAX_CONFIG_KB); a model's "
                          "config is a few KiB: keep large data in other files.")
    try:
        with open(path) as config_file:
            config = json.load(config_file)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildFailed(f"config.json is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise BuildFailed("config.json must hold a JSON object.")
    tasks = config.get("tasks")
    known = known_tasks()
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise BuildFailed(f"config.json needs \"tasks\": a list with some of {', '.join(known)}.")
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise BuildFailed(f"config.json names unknown tasks {unknown}; known tasks: {', '.join(known)}.")
    if not isinstance(config.get("description", ""), str):
        raise BuildFailed("config.json's description must be a string.")
    return config


class Builder(Runner):
    """Builds, one kind of background work (core/runner.py)."""

    kind, queue, table = "build", "builds", ModelVersion

    def __init__(self, config: Settings, sessions, storage, device: str, half: bool, model_sandbox, after_poll=None):
        lease = timedelta(seconds=config.build_lease_s)
        super().__init__(sessions, FairClaims(BUILDS, lease, config.account_max_running_builds), lease,
                         poll_s=config.build_poll_s)
        self.config = config
        self.model_sandbox = model_sandbox
        # Run after each look for work (the app unloads stale user models there).
        self.after_poll = after_poll or (lambda: None)
        self.storage = storage
        self.device = device
        self.half = half
        self.load_settings = LoadSettings.from_config(config)
        self.limits = ArchiveLimits(
            config.upload_max_bytes, config.upload_max_members,
            config.upload_max_uncompressed_bytes, config.upload_max_ratio,
        )

    # --- what is its own of the runner shape ------------------------------------------

    def claimed_values(self) -> dict:
        return {"status": "building"}

    def upkeep(self) -> None:
        self.notice_s3_uploads()

    def after_look(self) -> None:
        self.after_poll()

    def run(self, version_id: int) -> None:
        self.build(version_id)

    def notice_s3_uploads(self) -> None:
        """For S3 storage: queue the versions whose archive has arrived in the bucket."""
        if getattr(self.storage, "kind", "") != "s3":
            return
        with self.sessions() as session:
            waiting = session.scalars(select(ModelVersion.id).where(
                ModelVersion.status == "awaiting_upload", ModelVersion.upload_expires_at > utcnow()
            )).all()
            for version_id in waiting:
                if self.storage.uploaded(version_id):
                    session.execute(update(ModelVersion).where(
                        ModelVersion.id == version_id, ModelVersion.status == "awaiting_upload"
                    ).values(status="queued"))
            session.commit()

    # --- one build --------------------------------------------------------------

    def build(self, version_id: int) -> None:
        with self.renewing(version_id):
            self._build(version_id)

    def _build(self, version_id: int) -> None:
        lines: list[str] = []
        files_dir, venv_dir = version_dirs(self.config.data_dir, version_id)
        try:
            result = self._build_steps(version_id, files_dir, venv_dir, lines.append)
        except (BuildFailed, ArchiveRejected, RequirementsRejected, SandboxUnavailable, QuotaExceeded,
                UploadTooLarge, MissingWeights) as exc:
            self._finish(version_id, "fail", str(exc), lines, files_dir)
        except RequirementsFailed as exc:
            lines.append(exc.log)
            self._finish(version_id, "fail", requirements_message(str(exc), exc.log, exc.pip_failed), lines, files_dir)
        except (WorkerFailed, WorkerTimeout) as exc:  # the model's code failed, or its worker was stopped
            lines.append(worker_log(exc))
            self._finish(version_id, "fail", worker_message(exc), lines, files_dir)
        except Exception:  # the service's own failure: its traceback is for the operator, not the account
            log.exception("build of model version %s", version_id)
            self._finish(version_id, "fail", service_error_message(version_id), lines, files_dir)
        else:
            self._finish(version_id, "success", "Built and checked: every declared task answered its sample.",
                         lines, None, result)

    def _build_steps(self, version_id: int, files_dir: str, venv_dir: str, say) -> dict:
        root = os.path.dirname(files_dir)
        remove_tree(root)  # a resumed build starts clean
        os.makedirs(root)
        archive = self.storage.fetch(version_id, root, self.limits.max_archive_bytes)
        if not os.path.isfile(archive):
            raise BuildFailed("The upload is missing: PUT the zip to the upload URL again (ask for a new one).")
        say(f"checking and extracting {os.path.getsize(archive)} bytes")
        extracted = files_dir + ".extract"
        extract_archive(archive, extracted, self.limits)
        os.rename(model_root(extracted), files_dir)
        remove_tree(extracted)
        if archive.startswith(root + os.sep):
            os.remove(archive)  # fetched from S3: the extracted files are what is kept
        config = read_model_config(files_dir, self.config.upload_max_config_kb * 1024)
        upload_format = detect(files_dir, config)
        tasks = config["tasks"]
        say(f"format {upload_format.name}, tasks {tasks}")
        version = Version(version_id, tasks, files_dir, venv_dir, self.config, self.model_sandbox,
                          self.device, self.half, self.load_settings)
        served = upload_format.build(version, config, say)
        try:
            for task in tasks:
                self._check_task(served, task, say)
        finally:
            served.close()
            self._say_model_output(served, say)
        stored = tree_bytes(root)
        with self.sessions() as session:
            check_stored_bytes(session, self.config, version_id, stored)
        say(f"stored: {stored} bytes")
        store_version_files(self.config, self.storage, version_id, files_dir)  # for the other replicas (S3)
        return {"format": upload_format.name, "tasks": tasks, "description": config.get("description", ""),
                "stored_bytes": stored}

    @staticmethod
    def _say_model_output(served, say) -> None:
        """What the model's code printed while it loaded and answered (a worker's models only)."""
        recent_output = getattr(served.model, "recent_output", None)
        output = recent_output() if recent_output else ""
        if output.strip():
            say("your model's output (stdout and stderr, the last lines):\n" + output)

    def _check_task(self, served, task: str, say) -> None:
        if task not in served.runners:
            raise BuildFailed(f"This kind of model cannot serve {task}.")
        # The task's spec gives the sample and judges the answer.
        spec = task_spec(task)
        item = spec.sample()
        output = served.runners[task]([item])[0]
        problem = spec.check_answer(item, output)
        if problem:
            raise BuildFailed(f"{task}: on its sample input the model returned {str(output)[:200]!r}; it {problem}.")
        say(f"{task}: sample answered")

    def _finish(self, version_id: int, status: str, message: str, lines: list[str], cleanup: str | None, result=None):
        files_dir, venv_dir = version_dirs(self.config.data_dir, version_id)
        scrub = Scrubber(files_dir, venv_dir, self.config.data_dir)
        message, build_log = scrub.line(message), scrub.text("\n".join(lines))[-LOG_KEPT_CHARS:]
        with self.sessions() as session:
            version = session.get(ModelVersion, version_id)
            if version is None:  # the model was deleted during its build: keep nothing
                remove_tree(os.path.dirname(version_dirs(self.config.data_dir, version_id)[0]))
                discard_version_bundle(self.storage, version_id)
                return
            version.status = status
            version.build_message = message
            version.build_log = build_log
            version.finished_at = utcnow()
            version.lease_until = None
            if result:
                version.format = result["format"]
                version.tasks = result["tasks"]
                version.description = result["description"]
                version.stored_bytes = result["stored_bytes"]
                model = session.get(UserModel, version.model_id)
                if not serve_if_newest(session, model, version, "build"):
                    version.build_message = (f"{message} A newer version (id {model.current_version_id}) already "
                                             "serves; this one does not replace it.")
            if version.webhook:  # the upload asked for one
                notify(session, session.get(UserModel, version.model_id).account_id, "build", version.id,
                       version.webhook)
            session.commit()
            model_id = version.model_id
        if cleanup:
            remove_tree(os.path.dirname(cleanup))
        if result:
            remove_old_versions(self.sessions, self.config.data_dir, self.config.user_model_versions_kept,
                                model_id, self.storage)
        self.storage.delete(version_id)
        log.info("build of model version %s: %s: %s", version_id, status, message.splitlines()[0])
