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
training/datasets/child.py): this module records what they report. They run in
the sandbox (training/sandboxed.py), and what they leave is checked before use.

Everything a dataset or a job stores counts towards its account's stored bytes
(uploads/quotas.py): a parse whose files take the account over its limit
fails, and so does a job whose folder (checkpoints, output) grows past it,
measured while it runs.
"""

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from datetime import timedelta

from sqlalchemy import or_, select, update

from app import leases
from app.fair_claims import FairClaims, WorkKind, leased
from app.work import KindRunner
from app.db import Dataset, TrainingJob, UserModel, utcnow
from core.errors import ModelUnavailable
from core.settings import Settings
from model_registry.catalogue import MODELS, public_names
from model_registry.resolve import resolve_model_dir
from uploads.archive import tree_bytes
from sandbox import SandboxUnavailable
from uploads.quotas import over_quota_message, stored_usage
from uploads.serving import version_dirs
from uploads.version_bundles import store_version_files
from uploads.versions import add_numbered_version, remove_old_versions, serve_if_newest

from .child import ALREADY_RUNNING
from .dataset_bundles import discard_parsed_dataset, ensure_parsed_datasets, store_parsed_dataset
from .parsing import failed as parse_failed
from .parsing import run_parse
from .paths import dataset_dir, job_dir
from .records import JobRecord, log_line
from .sandboxed import ChildSandbox, UnsafeOutput, open_no_links, write_json_no_links

log = logging.getLogger(__name__)

LOG_KEEP_CHARS = 64_000
# Seconds between a running job's looks at its row (cancel, lease renewal, new
# statistics): what "cancel stops it within seconds" and "statistics readable
# while it runs" cost.
WATCH_S = 0.5
# Seconds a child has to stop after SIGTERM before SIGKILL.
STOP_GRACE_S = 5.0
# Seconds between measures of a running job's folder against the account's quota.
MEASURE_S = 2.0


class TrainingRunner:
    def __init__(self, config: Settings, sessions, storage, sandbox=None):
        self.config = config
        self.sessions = sessions
        self.storage = storage
        self.children = ChildSandbox(config, sandbox)
        self.lease = timedelta(seconds=config.training_lease_s)
        # Claimed fairly between accounts, each capped (app/fair_claims.py).
        self.parse_claims = FairClaims(PARSES, self.lease, config.account_max_running_parses)
        self.job_claims = FairClaims(JOBS, self.lease, config.account_max_running_jobs)
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

    def _claim(self, claims: FairClaims, **values) -> str | None:
        return claims.claim(self.sessions, **values)

    def _wait(self) -> None:
        self._wake.wait(self.config.training_poll_s)
        self._wake.clear()

    # --- the runner interface of app/work.py: kinds "parse" and "train" -------------

    def kinds(self) -> list[KindRunner]:
        """Its two kinds of work, each as a runner for app/work.py. A parse is cut
        short when a queue worker stops (and handed back); a training job's child
        is stopped by stop(), which hands the job back queued."""
        return [KindRunner("parse", self.wake, self.due_parses, self.run_claimed_parse,
                           claim=lambda: self._claim(self.parse_claims), run=self._parse,
                           upkeep=self._notice_s3_datasets,
                           hand_back=lambda dataset_id: leases.release(self.sessions, Dataset, dataset_id)),
                KindRunner("train", self.wake, self.due_jobs, self.run_claimed_job,
                           claim=lambda: self._claim(self.job_claims, status="running"), run=self.run_job_here,
                           stop=self.stop)]

    def due_parses(self, now=None) -> list[str]:
        return self.parse_claims.due_ids(self.sessions, now)

    def run_claimed_parse(self, dataset_id: str) -> bool:
        if not self.parse_claims.claim_row(self.sessions, dataset_id):
            return False
        self._parse(dataset_id)
        return True

    def due_jobs(self, now=None) -> list[str]:
        return self.job_claims.due_ids(self.sessions, now)

    def run_claimed_job(self, job_id: str) -> bool:
        """Run this job's attempt here, in the calling thread, if it is still due
        and its account under its cap."""
        if not self.job_claims.claim_row(self.sessions, job_id, status="running"):
            return False
        self.run_job_here(job_id)
        return True

    def run_job_here(self, job_id: str) -> None:
        """Run the attempt of a job this process claimed, in the calling thread."""
        with self._lock:
            self._running[job_id] = None
        self._run_job(job_id)

    # --- datasets -----------------------------------------------------------------

    def _datasets_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                self._notice_s3_datasets()
                while not self._stopped.is_set() and (dataset_id := self._claim(self.parse_claims)):
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
        folder = dataset_dir(self.config.data_dir, dataset_id)
        done = threading.Event()
        threading.Thread(target=leases.keep_renewed, args=(self.sessions, Dataset, dataset_id, self.lease, done),
                         daemon=True).start()
        try:
            outcome = run_parse(self.config, self.sessions, self.storage, self.children, dataset_id, folder)
            store_parsed_dataset(self.config, self.storage, dataset_id, outcome)  # for the other replicas (S3)
        except SandboxUnavailable as exc:  # never parsed unconfined
            outcome = parse_failed(f"The dataset could not be parsed: {exc}")
        except Exception as exc:  # a fetch from S3 failed, the disk is full...
            log.exception("dataset %s", dataset_id)
            outcome = parse_failed(f"The dataset could not be parsed: {type(exc).__name__}: {exc}")
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
            dataset.stored_bytes = tree_bytes(folder)
            dataset.finished_at = utcnow()
            dataset.lease_until = None
            session.commit()
        log.info("dataset %s: %s: %s", dataset_id, outcome["status"], outcome["message"])

    # --- training jobs ------------------------------------------------------------

    def _jobs_loop(self) -> None:
        per_process = max(1, self.config.training_jobs_per_process)
        while not self._stopped.is_set():
            try:
                while not self._stopped.is_set() and len(self.running_jobs()) < per_process:
                    job_id = self._claim(self.job_claims, status="running")
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
        if job.attempts + 1 > config.training_max_attempts:
            record.finish("failed", f"The training process stopped without finishing {job.attempts} times "
                                    f"(INFER_TRAINING_MAX_ATTEMPTS); see the log for the last attempt's output. "
                                    f"A process that needs more memory than INFER_TRAINING_MEMORY_MB "
                                    f"({config.training_memory_mb} MB) ends this way.")
            return
        record.started(job.attempts + 1)
        folder = job_dir(config.data_dir, job_id)
        os.makedirs(folder, exist_ok=True)
        try:
            spec = self._job_spec(job, folder)
        except (ModelUnavailable, LookupError) as exc:
            record.finish("failed", str(exc))
            shutil.rmtree(folder, ignore_errors=True)
            return
        write_json_no_links(os.path.join(folder, "job.json"), self.children.child_spec(spec))
        record.add_log(f"attempt {job.attempts + 1}: starting the training process"
                       + (" (resuming from the last epoch checkpoint)" if os.listdir(os.path.join(folder, "checkpoints"))
                          else ""))
        try:
            outcome = self._supervise(job_id, job.account_id, folder, spec, record)
        except SandboxUnavailable as exc:  # never trained unconfined
            record.failure, outcome = f"The training could not start: {exc}", "failed"
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
            base_dir, _source = resolve_model_dir(spec, config.model_dir, public_names(spec.key))
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
            "dataset_dir": dataset_dir(config.data_dir, job.dataset_id),
            "validation_dataset_dir": (dataset_dir(config.data_dir, job.validation_dataset_id)
                                       if job.validation_dataset_id else None),
            "validation_split": job.validation_split, "torch_threads": config.training_torch_threads,
            "nice": config.training_nice, "memory_mb": config.training_memory_mb,
            # What loading the trained version needs to check it (the base model's folder).
            "settings": {"MODEL_DIR": config.model_dir, "DATA_DIR": "", "TORCH_THREADS": 1},
        }

    def _supervise(self, job_id: str, account_id: int, folder: str, spec: dict, record: JobRecord) -> str:
        """Run the child to its end; what ended it: result, failed, cancelled,
        stopping, gone (the job was deleted) or how the process died."""
        read_end, write_end = os.pipe()
        try:
            with open_no_links(os.path.join(folder, "child.out"), "ab") as output:
                child = self.children.start_training(account_id, folder, spec, write_end, output)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        with self._lock:
            self._running[job_id] = child
        reader = threading.Thread(target=record.read_events, args=(os.fdopen(read_end),), daemon=True)
        reader.start()
        ended = None
        next_measure = time.monotonic()
        while ended is None:
            try:
                child.wait(timeout=WATCH_S)
            except subprocess.TimeoutExpired:
                pass
            else:
                break
            if self._stopped.is_set():
                ended = "stopping"
                continue
            state = record.save_progress(self.lease)
            if state in ("gone", "cancel"):
                ended = "gone" if state == "gone" else "cancelled"
            elif time.monotonic() >= next_measure:
                next_measure = time.monotonic() + MEASURE_S
                if record.measure(tree_bytes(folder), self.config):  # its checkpoints outgrew the quota
                    ended = "failed"
        if ended is None and self._stopped.is_set() and record.result is None and record.failure is None:
            ended = "stopping"  # stop() ended the child
        if ended is not None:
            _stop_child(child)
        over_memory = self.children.killed_for_memory(child)
        self.children.stop(child)
        reader.join(timeout=10)
        record.save_progress(self.lease)
        if ended is not None:
            return ended
        if over_memory:  # the same data and settings would go over again: a failure, not a crash to retry
            record.failure = (f"The training process went over its memory limit of {self.config.training_memory_mb}"
                              " MiB (INFER_TRAINING_MEMORY_MB) and was stopped; lower batch_size or max_length, or "
                              "train a smaller base model.")
            return "failed"
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
        try:
            self.children.reclaim(output)  # served from now on: only files and folders, the service's own
        except UnsafeOutput as exc:
            record.finish("failed", f"The training process left an output the service cannot use ({exc}).")
            shutil.rmtree(folder, ignore_errors=True)
            return
        stored = tree_bytes(output)
        with self.sessions() as session:
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
                session, model.id, status="building", format=result["format"], tasks=result["tasks"],
                description=result["description"] or f"Trained by {job_id}.", upload_expires_at=utcnow(),
                source="training", job_id=job_id, dataset_id=job.dataset_id, metrics=result["metrics"],
                build_message="", build_log="")
            store_version_files(config, self.storage, version.id, output)  # for the other replicas (S3)
            files_dir = version_dirs(config.data_dir, version.id)[0]
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
        remove_old_versions(self.sessions, config.data_dir, config.user_model_versions_kept, model_id,
                            self.storage)


def _parse_due(now):
    return (Dataset.status == "processing") & or_(Dataset.lease_until.is_(None), Dataset.lease_until < now)


def _job_due(now):
    return or_(TrainingJob.status == "queued", (TrainingJob.status == "running") & (TrainingJob.lease_until < now))


PARSES = WorkKind(Dataset, due=_parse_due, running=leased("processing"), oldest_first=Dataset.created_at)
JOBS = WorkKind(TrainingJob, due=_job_due, running=leased("running"), oldest_first=TrainingJob.created_at)


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
        with open_no_links(os.path.join(folder, "child.out"), "rb") as output:
            output.seek(0, os.SEEK_END)
            output.seek(max(0, output.tell() - chars))
            return output.read().decode("utf-8", "replace")
    except OSError:
        return ""

