"""The training runner: parses datasets and runs training jobs, each in a child
process, with the database as the only record of what is to do.

Every web process runs one (INFER_TRAINER), like the builder: claiming work is
one conditional UPDATE, and a claim is a lease the claimant renews while it
works. A process that dies stops renewing; once the lease has run out
(INFER_TRAINING_LEASE_S) another process, or this one after a restart, takes
the work over. A training job taken over resumes from its last epoch
checkpoint; one whose child process dies (killed, out of memory) is queued
again at once, up to INFER_TRAINING_MAX_ATTEMPTS starts. A process that stops
cleanly hands its jobs back at once.

Children never see the database or the service's secrets (training/child.py and
training/datasets/child.py): this module records what they report.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from datetime import timedelta

from sqlalchemy import or_, select, update

from app import leases
from app.work import KindRunner
from app.db import Dataset, ModelVersion, TrainingJob, UserModel, utcnow
from core.errors import ModelUnavailable
from model_registry.catalogue import MODELS, public_names
from model_registry.resolve import resolve_model_dir
from uploads.archive import tree_bytes
from uploads.quotas import QuotaExceeded, check_stored_bytes
from uploads.serving import version_dirs
from uploads.version_bundles import store_version_files
from uploads.versions import remove_old_versions, serve_if_newest

from .child import ALREADY_RUNNING
from .dataset_bundles import discard_parsed_dataset, ensure_parsed_datasets, store_parsed_dataset
from .paths import dataset_dir, dataset_source, job_dir
from .records import JobRecord, child_environment, log_line

log = logging.getLogger(__name__)

LOG_KEEP_CHARS = 64_000
# Seconds between a running job's looks at its row (cancel, lease renewal, new
# statistics): what "cancel stops it within seconds" and "statistics readable
# while it runs" cost.
WATCH_S = 0.5
# Seconds a child has to stop after SIGTERM before SIGKILL.
STOP_GRACE_S = 5.0


class TrainingRunner:
    def __init__(self, config: dict, sessions, storage):
        self.config = config
        self.sessions = sessions
        self.storage = storage
        self.lease = timedelta(seconds=float(config["TRAINING_LEASE_S"]))
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._job_threads: list[threading.Thread] = []
        self._running: dict[str, subprocess.Popen | None] = {}  # job id -> its child, while it runs here
        self._lock = threading.Lock()

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._datasets_loop, "datasets"), (self._jobs_loop, "training")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop looking for work; stop this process's children and hand their jobs
        back (queued), so another process resumes them without waiting for a lease."""
        self._stopped.set()
        self._wake.set()
        with self._lock:
            running = dict(self._running)
        for job_id, child in running.items():
            if child is not None:
                _stop_child(child)
        for thread in [*self._threads, *self._job_threads]:
            thread.join(timeout=STOP_GRACE_S * 2)

    def running_jobs(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def child_pid(self, job_id: str) -> int | None:
        with self._lock:
            child = self._running.get(job_id)
        return child.pid if child is not None else None

    def _claim(self, table, claimable, **values) -> str | None:
        return leases.claim(self.sessions, table, claimable, self.lease, table.created_at, **values)

    def _wait(self) -> None:
        self._wake.wait(float(self.config["TRAINING_POLL_S"]))
        self._wake.clear()

    # --- the runner interface of app/work.py: kinds "parse" and "train" -------------

    def kinds(self) -> list[KindRunner]:
        """Its two kinds of work, each as a runner for app/work.py. A parse is cut
        short when a queue worker stops (and handed back); a training job's child
        is stopped by stop(), which hands the job back queued."""
        return [KindRunner("parse", self.wake, self.due_parses, self.run_claimed_parse,
                           upkeep=self._notice_s3_datasets,
                           hand_back=lambda dataset_id: leases.release(self.sessions, Dataset, dataset_id)),
                KindRunner("train", self.wake, self.due_jobs, self.run_claimed_job, stop=self.stop)]

    def due_parses(self, now=None) -> list[str]:
        return leases.due_ids(self.sessions, Dataset, _parse_due, Dataset.created_at, now)

    def run_claimed_parse(self, dataset_id: str) -> bool:
        if not leases.claim_row(self.sessions, Dataset, dataset_id, _parse_due, self.lease):
            return False
        self._parse(dataset_id)
        return True

    def due_jobs(self, now=None) -> list[str]:
        return leases.due_ids(self.sessions, TrainingJob, _job_due, TrainingJob.created_at, now)

    def run_claimed_job(self, job_id: str) -> bool:
        """Run this job's attempt here, in the calling thread, if it is still due."""
        if not leases.claim_row(self.sessions, TrainingJob, job_id, _job_due, self.lease, status="running"):
            return False
        with self._lock:
            self._running[job_id] = None
        self._run_job(job_id)
        return True

    # --- datasets -----------------------------------------------------------------

    def _datasets_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self._notice_s3_datasets()
                while not self._stopped.is_set() and (dataset_id := self._claim(Dataset, _parse_due)):
                    self._parse(dataset_id)
            except Exception:  # the loop must outlive anything a parse or the database throws
                log.exception("dataset loop")
            self._wait()

    def _notice_s3_datasets(self) -> None:
        if self.storage.kind != "s3":
            return
        with self.sessions() as session:
            waiting = session.scalars(select(Dataset).where(Dataset.status == "awaiting_upload",
                                                            Dataset.upload_expires_at > utcnow())).all()
            for dataset in waiting:
                if self.storage.uploaded(0, key=self.storage.dataset_key(dataset.id)):
                    dataset.status = "processing"
                    dataset.parse_log = [*dataset.parse_log, log_line("Upload noticed in the bucket; waiting in the queue.")]
            session.commit()

    def _parse(self, dataset_id: str) -> None:
        folder = dataset_dir(self.config["DATA_DIR"], dataset_id)
        done = threading.Event()
        threading.Thread(target=leases.keep_renewed, args=(self.sessions, Dataset, dataset_id, self.lease, done),
                         daemon=True).start()
        try:
            outcome = self._run_parser(dataset_id, folder)
            store_parsed_dataset(self.config, self.storage, dataset_id, outcome)  # for the other replicas (S3)
        except Exception as exc:  # a fetch from S3 failed, the disk is full...
            log.exception("dataset %s", dataset_id)
            outcome = {"status": "failed", "format": None, "stats": None, "log": [],
                       "message": f"The dataset could not be parsed: {type(exc).__name__}: {exc}"}
        finally:
            done.set()
        with self.sessions() as session:
            dataset = session.get(Dataset, dataset_id)
            if dataset is None:  # deleted while it was parsed
                shutil.rmtree(folder, ignore_errors=True)
                discard_parsed_dataset(self.storage, dataset_id)
                return
            dataset.status = outcome["status"]
            dataset.format = outcome.get("format") or dataset.format
            dataset.stats = outcome.get("stats")
            dataset.message = outcome["message"]
            dataset.parse_log = [*dataset.parse_log, *outcome.get("log", [])]
            dataset.finished_at = utcnow()
            dataset.lease_until = None
            session.commit()
        log.info("dataset %s: %s: %s", dataset_id, outcome["status"], outcome["message"])

    def _run_parser(self, dataset_id: str, folder: str) -> dict:
        config = self.config
        source = dataset_source(config["DATA_DIR"], dataset_id)
        if not os.path.isfile(source) and self.storage.kind == "s3":
            from uploads.storage import UploadTooLarge

            os.makedirs(folder, exist_ok=True)  # sent to another replica, whose folder this one lacks
            try:
                fetched = self.storage.fetch(0, folder, int(config["DATASET_MAX_BYTES"]),
                                             key=self.storage.dataset_key(dataset_id), filename="source")
            except UploadTooLarge:
                return {"status": "failed", "message": f"The upload is over {config['DATASET_MAX_BYTES']} bytes "
                                                       "(INFER_DATASET_MAX_BYTES)."}
            if not os.path.isfile(fetched):
                return {"status": "failed", "message": "The upload is missing from the bucket: create the dataset again."}
        with self.sessions() as session:
            dataset = session.get(Dataset, dataset_id)
            if dataset is None:
                return {"status": "failed", "message": "deleted"}
            declared, options = dataset.format or None, dict(dataset.options or {})
        result_path = os.path.join(folder, "parse_result.json")
        if os.path.exists(result_path):  # an earlier attempt's; the parser clears its own other output
            os.remove(result_path)
        request = {"source": source, "format": declared, "options": options, "limits": {
            "max_rows": int(config["DATASET_MAX_ROWS"]), "max_line_bytes": int(config["DATASET_MAX_LINE_BYTES"]),
            "max_image_pixels": int(config["MAX_IMAGE_PIXELS"]), "max_label_count": int(config["DATASET_MAX_LABELS"]),
            "max_archive_bytes": int(config["DATASET_MAX_BYTES"]), "max_members": int(config["UPLOAD_MAX_MEMBERS"]),
            "max_uncompressed_bytes": int(config["UPLOAD_MAX_UNCOMPRESSED_BYTES"]),
            "max_ratio": int(config["UPLOAD_MAX_RATIO"]), "max_memory_mb": int(config["DATASET_PARSE_MEMORY_MB"])},
            "nice": int(config["TRAINING_NICE"])}
        with open(os.path.join(folder, "parse_request.json"), "w") as out:
            json.dump(request, out)
        with open(os.path.join(folder, "parse.out"), "wb") as output:
            finished = subprocess.run([sys.executable, "-m", "training.datasets.child", folder], stdout=output,
                                      stderr=subprocess.STDOUT, env=child_environment(), cwd=_service_root())
        if not os.path.isfile(result_path):
            return {"status": "failed", "message": (
                f"The parser stopped without a result (exit status {finished.returncode}); a file that needs more "
                f"than INFER_DATASET_PARSE_MEMORY_MB ({config['DATASET_PARSE_MEMORY_MB']} MB) ends this way.")}
        with open(result_path) as result_file:
            return json.load(result_file)

    # --- training jobs ------------------------------------------------------------

    def _jobs_loop(self) -> None:
        per_process = max(1, int(self.config["TRAINING_JOBS_PER_PROCESS"]))
        while not self._stopped.is_set():
            try:
                while not self._stopped.is_set() and len(self.running_jobs()) < per_process:
                    job_id = self._claim(TrainingJob, _job_due, status="running")
                    if job_id is None:
                        break
                    with self._lock:
                        self._running[job_id] = None
                    thread = threading.Thread(target=self._run_job, args=(job_id,), name=f"job {job_id}", daemon=True)
                    self._job_threads = [t for t in self._job_threads if t.is_alive()] + [thread]
                    thread.start()
            except Exception:
                log.exception("training loop")
            self._wait()

    def cancel(self, session, job: TrainingJob) -> None:
        """Ask for a job to stop: a queued one is cancelled at once; a running one
        when its runner next looks (within WATCH_S), wherever it runs."""
        if job.status == "queued":
            claimed = session.execute(update(TrainingJob).where(TrainingJob.id == job.id, TrainingJob.status == "queued")
                                      .values(status="cancelled", cancel_requested=True, finished_at=utcnow(),
                                              message="Cancelled before it started."))
            if claimed.rowcount == 1:
                session.commit()
                session.refresh(job)
                return
        session.execute(update(TrainingJob).where(TrainingJob.id == job.id).values(cancel_requested=True))
        session.commit()
        session.refresh(job)

    def _run_job(self, job_id: str) -> None:
        record = JobRecord(self.sessions, job_id, LOG_KEEP_CHARS)
        try:
            self._attempt(job_id, record)
        except Exception as exc:
            log.exception("job %s", job_id)
            record.finish("failed", f"The job failed in the service: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._running.pop(job_id, None)
            self._wake.set()

    def _attempt(self, job_id: str, record: JobRecord) -> None:
        config = self.config
        job = record.load()
        if job is None:
            return
        if job.cancel_requested:
            record.finish("cancelled", "Cancelled.")
            return
        if job.attempts + 1 > int(config["TRAINING_MAX_ATTEMPTS"]):
            record.finish("failed", f"The training process stopped without finishing {job.attempts} times "
                                    f"(INFER_TRAINING_MAX_ATTEMPTS); see the log for the last attempt's output. "
                                    f"A process that needs more memory than INFER_TRAINING_MEMORY_MB "
                                    f"({config['TRAINING_MEMORY_MB']} MB) ends this way.")
            return
        record.started(job.attempts + 1)
        folder = job_dir(config["DATA_DIR"], job_id)
        os.makedirs(folder, exist_ok=True)
        try:
            spec = self._job_spec(job, folder)
        except (ModelUnavailable, LookupError) as exc:
            record.finish("failed", str(exc))
            shutil.rmtree(folder, ignore_errors=True)
            return
        with open(os.path.join(folder, "job.json"), "w") as out:
            json.dump(spec, out)
        record.add_log(f"attempt {job.attempts + 1}: starting the training process"
                       + (" (resuming from the last epoch checkpoint)" if os.listdir(os.path.join(folder, "checkpoints"))
                          else ""))
        outcome = self._supervise(job_id, folder, record)
        if outcome == "result":
            self._publish(job_id, folder, record)
        elif outcome in ("failed", "cancelled", "gone"):
            tail = _tail(folder)
            shutil.rmtree(folder, ignore_errors=True)  # a finished job's checkpoints serve nothing
            if outcome == "failed":
                record.finish("failed", record.failure or "The training failed.", tail=tail)
            elif outcome == "cancelled":
                record.finish("cancelled", "Cancelled while running.")
        elif outcome == "stopping":
            record.requeue("The service stopped; the job resumes from its last epoch checkpoint.")
        else:  # the child died: start it again, from its checkpoint
            record.requeue(f"The training process stopped ({outcome}); the job resumes from its last epoch "
                           "checkpoint.", tail=_tail(folder))
            self._wake.set()

    def _job_spec(self, job: TrainingJob, folder: str) -> dict:
        config = self.config
        os.makedirs(os.path.join(folder, "checkpoints"), exist_ok=True)
        base_dir = base_file = None
        if job.base_model:
            spec = MODELS[job.base_model]
            base_dir, _source = resolve_model_dir(spec, config["MODEL_DIR"], public_names(spec.key))
            base_file = spec.filename
        with self.sessions() as session:
            dataset = session.get(Dataset, job.dataset_id)
            if dataset is None or dataset.status != "ready":
                raise LookupError(f"Dataset {job.dataset_id} is gone or not ready.")
            dataset_format = dataset.format
        ensure_parsed_datasets(config, self.storage, job.dataset_id, job.validation_dataset_id)  # parsed elsewhere?
        return {
            "job_id": job.id, "task": job.task, "base_model": job.base_model, "base_model_dir": base_dir,
            "base_model_file": base_file, "hyperparameters": job.hyperparameters, "dataset_format": dataset_format,
            "dataset_dir": dataset_dir(config["DATA_DIR"], job.dataset_id),
            "validation_dataset_dir": (dataset_dir(config["DATA_DIR"], job.validation_dataset_id)
                                       if job.validation_dataset_id else None),
            "validation_split": job.validation_split, "torch_threads": int(config["TRAINING_TORCH_THREADS"]),
            "nice": int(config["TRAINING_NICE"]), "memory_mb": int(config["TRAINING_MEMORY_MB"]),
            # What loading the trained version needs to check it (the base model's folder).
            "settings": {"MODEL_DIR": config["MODEL_DIR"], "DATA_DIR": "", "TORCH_THREADS": 1},
        }

    def _supervise(self, job_id: str, folder: str, record: JobRecord) -> str:
        """Run the child to its end; what ended it: result, failed, cancelled,
        stopping, gone (the job was deleted) or how the process died."""
        read_end, write_end = os.pipe()
        env = child_environment({"INFER_TRAINING_EVENTS_FD": str(write_end)})
        with open(os.path.join(folder, "child.out"), "ab") as output:
            child = subprocess.Popen([sys.executable, "-m", "training.child", folder], stdout=output,
                                     stderr=subprocess.STDOUT, env=env, pass_fds=(write_end,), cwd=_service_root(),
                                     # Its own process group, to stop it with all it started; not its own
                                     # session: a new session is a new scheduler autogroup, which Linux
                                     # shares the CPU with as an equal, whatever the child's niceness.
                                     process_group=0)
        os.close(write_end)
        with self._lock:
            self._running[job_id] = child
        reader = threading.Thread(target=record.read_events, args=(os.fdopen(read_end),), daemon=True)
        reader.start()
        ended = None
        while ended is None:
            try:
                child.wait(timeout=WATCH_S)
            except subprocess.TimeoutExpired:
                pass
            else:
                break
            if self._stopped.is_set():
                ended = "stopping"
            else:
                state = record.save_progress(self.lease)
                if state == "gone":
                    ended = "gone"
                elif state == "cancel":
                    ended = "cancelled"
        if ended is None and self._stopped.is_set() and record.result is None and record.failure is None:
            ended = "stopping"  # stop() ended the child
        if ended is not None:
            _stop_child(child)
        reader.join(timeout=10)
        record.save_progress(self.lease)
        if ended is not None:
            return ended
        if record.result is not None:
            return "result"
        if record.failure is not None:
            return "failed"
        if child.returncode == ALREADY_RUNNING:
            return "another process holds the job's lock"
        if child.returncode < 0:
            return f"killed by signal {-child.returncode}"
        return f"exit status {child.returncode}"

    def _publish(self, job_id: str, folder: str, record: JobRecord) -> None:
        """The trained files become the model's next version, which serves."""
        config = self.config
        result = record.result
        output = os.path.join(folder, "output")
        stored = tree_bytes(output)
        with self.sessions() as session:
            job = session.get(TrainingJob, job_id)
            model = session.get(UserModel, job.model_id) if job is not None else None
            if job is None or model is None:
                shutil.rmtree(folder, ignore_errors=True)
                return
            versions = session.scalars(select(ModelVersion.number).where(ModelVersion.model_id == model.id)).all()
            version = ModelVersion(
                model_id=model.id, number=max(versions, default=0) + 1, status="building", format=result["format"],
                tasks=result["tasks"], description=result["description"] or f"Trained by {job_id}.",
                upload_expires_at=utcnow(), source="training", job_id=job_id, dataset_id=job.dataset_id,
                metrics=result["metrics"], build_message="", build_log="")
            session.add(version)
            session.flush()
            try:
                check_stored_bytes(session, config, version.id, stored)
            except QuotaExceeded as exc:
                session.rollback()
                record.finish("failed", str(exc))
                shutil.rmtree(folder, ignore_errors=True)
                return
            store_version_files(config, self.storage, version.id, output)  # for the other replicas (S3)
            files_dir = version_dirs(config["DATA_DIR"], version.id)[0]
            os.makedirs(os.path.dirname(files_dir), exist_ok=True)
            os.rename(output, files_dir)
            version.status, version.stored_bytes, version.finished_at = "success", stored, utcnow()
            version.build_message = f"Trained by job {job_id}; best epoch {result['best_epoch']}."
            serve_if_newest(session, model, version, "training")
            job.version_number = version.number
            session.commit()
            model_id, number = model.id, version.number
        shutil.rmtree(folder, ignore_errors=True)  # checkpoints are no use once the version exists
        record.finish("succeeded", f"Trained version {number} of {record.model_name}; it serves now.",
                      best_epoch=result["best_epoch"], metrics=result["metrics"],
                      samples_per_second=result.get("samples_per_second"))
        remove_old_versions(self.sessions, config["DATA_DIR"], int(config["USER_MODEL_VERSIONS_KEPT"]), model_id,
                            self.storage)


def _parse_due(now):
    return (Dataset.status == "processing") & or_(Dataset.lease_until.is_(None), Dataset.lease_until < now)


def _job_due(now):
    return or_(TrainingJob.status == "queued", (TrainingJob.status == "running") & (TrainingJob.lease_until < now))


def _stop_child(child: subprocess.Popen) -> None:
    """SIGTERM the child's whole process group, SIGKILL what is left after the grace time."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, STOP_GRACE_S)):
        try:
            os.killpg(child.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(folder: str, chars: int = 4000) -> str:
    """The end of what the child printed (a library's traceback says most)."""
    try:
        with open(os.path.join(folder, "child.out"), "rb") as output:
            output.seek(0, os.SEEK_END)
            output.seek(max(0, output.tell() - chars))
            return output.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _service_root() -> str:
    """The folder the service's packages are imported from (the children's cwd)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
