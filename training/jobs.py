"""Training jobs, one kind of background work (core/runner.py): each attempt of
a job runs in a child process, with the database as the only record of what is
to do.

Every web process runs up to INFER_TRAINING_JOBS_PER_PROCESS (INFER_TRAINER), or
the queue's workers do: claiming a job is one conditional UPDATE, fairly between
accounts (core/fair_claims.py), and a claim is a lease the runner renews while the
job runs. A process that dies stops renewing; once the lease has run out
(INFER_TRAINING_LEASE_S) another process, or this one after a restart, takes the
job over. A job taken over resumes from its last epoch checkpoint; one whose
child process dies (killed, out of memory) is queued again at once, up to
INFER_TRAINING_MAX_ATTEMPTS starts. A process that stops cleanly hands its jobs
back at once (its children stopped, the jobs queued). With S3 storage the
checkpoints are copied to the bucket as they are saved, and fetched by the
worker that takes the job over, wherever it runs (training/checkpoint_store.py);
a search's finished runs are too (training/search_store.py).

Children never see the database or the service's secrets (training/child.py):
they get a TrainingRequest (training/child_records.py) and report events, which
training/records.py saves on the row. They run in the sandbox
(training/sandboxed.py), and what they leave is checked before use
(training/publish.py).

Everything a job stores counts towards its account's stored bytes
(uploads/quotas.py): a job whose folder (checkpoints, output) grows past it
fails, measured while it runs.
"""

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from datetime import timedelta

from sqlalchemy import or_

from core import leases
from core.errors import ModelUnavailable
from core.fair_claims import FairClaims, WorkKind, leased
from core.runner import Runner
from core.settings import Settings
from core.tables import Dataset, ModelVersion, TrainingJob
from model_registry.catalogue import MODELS, public_names
from model_registry.resolve import resolve_model_dir
from sandbox import SandboxUnavailable
from tasks.spec import trainer_for
from uploads.archive import tree_bytes
from uploads.bundles import BundleRejected, StorageUnreachable, shared
from uploads.serving import version_dirs
from uploads.version_bundles import ensure_version_files
from uploads.versions import has_files

from .checkpoint_store import CheckpointMirror, forget_checkpoints, restore_checkpoints
from .child import ALREADY_RUNNING
from .child_records import TrainingRequest
from .dataset_bundles import ensure_parsed_revision
from .paths import job_dir, revision_dir
from .publish import publish_version
from .records import JobRecord
from .sandboxed import ChildSandbox, open_no_links, write_json_no_links
from .search_store import SearchMirror, restore_search

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


class TrainingJobs(Runner):
    kind, queue, table = "train", "training", TrainingJob
    # A queue worker told to stop calls stop(): the child ends and the job goes
    # back to the queue, to resume from its checkpoint.
    cut_short = False

    def __init__(self, config: Settings, sessions, storage, children: ChildSandbox):
        lease = timedelta(seconds=config.training_lease_s)
        super().__init__(sessions, FairClaims(JOBS, lease, config.account_max_running_jobs), lease,
                         poll_s=config.training_poll_s, slots=config.training_jobs_per_process)
        self.config = config
        self.storage = storage
        self.children = children
        self._children: dict[str, subprocess.Popen] = {}  # job id -> its child, while it runs here
        self._children_lock = threading.Lock()

    def claimed_values(self) -> dict:
        return {"status": "running"}

    def stop_runs(self) -> None:
        """Stop this process's children: their jobs go back to the queue (see
        _attempt), so another process resumes them without waiting for a lease."""
        with self._children_lock:
            running = list(self._children.values())
        for child in running:
            _stop_child(child)
        self.join(timeout=STOP_GRACE_S * 2)

    def child_pid(self, job_id: str) -> int | None:
        with self._children_lock:
            child = self._children.get(job_id)
        return child.pid if child is not None else None

    def cancel(self, session, job: TrainingJob) -> None:
        """Ask for a job to stop: a queued one is cancelled at once; a running one
        when its runner next looks (within WATCH_S), wherever it runs."""
        leases.cancel(session, job, "training_job")
        if job.status == "cancelled":  # it was queued: no runner will end it, and it may have run before
            forget_checkpoints(self.storage, job.id)

    def run(self, job_id: str) -> None:
        """Run the attempt of a job this process claimed, in the calling thread."""
        record = JobRecord(self.sessions, job_id, LOG_KEEP_CHARS)
        try:
            self._attempt(job_id, record)
        except Exception as exc:
            log.exception("job %s", job_id)
            record.finish("failed", f"The job failed in the service: {type(exc).__name__}: {exc}")
            forget_checkpoints(self.storage, job_id)
        finally:
            with self._children_lock:
                self._children.pop(job_id, None)

    def _attempt(self, job_id: str, record: JobRecord) -> None:
        config = self.config
        job = record.load()
        if job is None:
            return
        if job.cancel_requested:
            record.finish("cancelled", "Cancelled.")
            forget_checkpoints(self.storage, job_id)
            return
        if job.attempts + 1 > config.training_max_attempts:
            forget_checkpoints(self.storage, job_id)
            record.finish("failed", f"The training process stopped without finishing {job.attempts} times "
                                    f"(INFER_TRAINING_MAX_ATTEMPTS); see the log for the last attempt's output. "
                                    f"A process that needs more memory than INFER_TRAINING_MEMORY_MB "
                                    f"({config.training_memory_mb} MB) ends this way.")
            return
        record.started(job.attempts + 1)
        folder = job_dir(config.data_dir, job_id)
        os.makedirs(folder, exist_ok=True)
        try:
            request = self._training_request(job, folder)
        except (ModelUnavailable, LookupError) as exc:
            record.finish("failed", str(exc))
            shutil.rmtree(folder, ignore_errors=True)
            forget_checkpoints(self.storage, job_id)
            return
        checkpoint_dir = os.path.join(folder, "checkpoints")
        required = trainer_for(job.task).checkpoint_files
        search_dir = os.path.join(folder, "search")
        if shared(self.storage):
            self._restore_checkpoints(job_id, checkpoint_dir, required, record)
            if job.search:
                self._restore_search(job_id, search_dir, record)
        write_json_no_links(os.path.join(folder, "job.json"), self.children.child_request(request).to_dict())
        record.add_log(f"attempt {job.attempts + 1}: starting the training process"
                       + (" (resuming from the last epoch checkpoint)" if os.listdir(checkpoint_dir) else ""))
        mirrors = [CheckpointMirror(config, self.storage, job_id, checkpoint_dir, required)]
        if job.search:
            mirrors.append(SearchMirror(config, self.storage, job_id, search_dir))
        if shared(self.storage):  # a worker on another host resumes from the bucket's copy
            for mirror in mirrors:
                mirror.start()
        try:
            outcome = self._supervise(job_id, job.account_id, folder, request, record)
        except SandboxUnavailable as exc:  # never trained unconfined
            record.failure, outcome = f"The training could not start: {exc}", "failed"
        finally:
            for mirror in mirrors:
                mirror.stop()
        ends = outcome in ("result", "failed", "cancelled", "gone")
        if not ends and shared(self.storage):
            for mirror in mirrors:
                mirror.sync_logged()  # what the child saved since the last look, for whoever resumes it
        if outcome == "result":
            publish_version(self.config, self.sessions, self.storage, self.children, job_id, folder, record)
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
        if ends:  # succeeded, failed, cancelled or deleted: its checkpoints serve nothing now
            forget_checkpoints(self.storage, job_id)

    def _restore_checkpoints(self, job_id: str, checkpoint_dir: str, required: tuple[str, ...],
                             record: JobRecord) -> None:
        """The bucket's checkpoints when they are newer than this worker's (the
        job ran elsewhere). One the bucket cannot give, or that breaks the bundle
        rules, is left out, said in the log: the job trains from what it has."""
        try:
            fetched = restore_checkpoints(self.config, self.storage, job_id, checkpoint_dir, required)
        except (StorageUnreachable, BundleRejected) as exc:
            record.add_log(f"the checkpoints in the shared store could not be fetched ({exc}); training from the "
                           "ones this worker has, if any")
            return
        if fetched:
            record.add_log(f"fetched {', '.join(fetched)} from the shared store (saved by another worker)")

    def _restore_search(self, job_id: str, search_dir: str, record: JobRecord) -> None:
        """The bucket's search state when it has more finished runs than this
        worker's (the search ran elsewhere): those runs are not trained again.
        One the bucket cannot give, or that breaks the bundle rules, is left out,
        said in the log: the search trains its trials again."""
        try:
            runs = restore_search(self.config, self.storage, job_id, search_dir)
        except (StorageUnreachable, BundleRejected) as exc:
            record.add_log(f"the search's state in the shared store could not be fetched ({exc}); its trials "
                           "train again")
            return
        if runs:
            record.add_log(f"fetched the search's state from the shared store ({runs} finished runs, saved by "
                           "another worker)")

    def _training_request(self, job: TrainingJob, folder: str) -> TrainingRequest:
        config = self.config
        os.makedirs(os.path.join(folder, "checkpoints"), exist_ok=True)
        base_dir = base_file = None
        if job.base_model:
            model = MODELS[job.base_model]
            base_dir, _source = resolve_model_dir(model, config.model_dir, public_names(model.key))
            base_file = model.filename
        with self.sessions() as session:
            dataset = session.get(Dataset, job.dataset_id)
            if dataset is None or dataset.status != "ready":
                raise LookupError(f"Dataset {job.dataset_id} is gone or not ready.")
            dataset_format = dataset.format
        # Parsed (or edited) elsewhere? Fetched first. An old revision stays trainable as it was.
        ensure_parsed_revision(config, self.storage, job.dataset_id, job.dataset_revision or 1)
        if job.validation_dataset_id:
            ensure_parsed_revision(config, self.storage, job.validation_dataset_id, job.validation_dataset_revision or 1)
        if job.test_dataset_id:
            ensure_parsed_revision(config, self.storage, job.test_dataset_id, job.test_dataset_revision or 1)
        parent_dir = self._parent_dir(job)
        return TrainingRequest(
            job_id=job.id, task=job.task, base_model=job.base_model, base_model_dir=base_dir,
            base_model_file=base_file, hyperparameters=job.hyperparameters, dataset_format=dataset_format,
            dataset_dir=revision_dir(config.data_dir, job.dataset_id, job.dataset_revision),
            validation_dataset_dir=(revision_dir(config.data_dir, job.validation_dataset_id,
                                                 job.validation_dataset_revision)
                                    if job.validation_dataset_id else None),
            validation_split=job.validation_split, torch_threads=config.training_torch_threads,
            nice=config.training_nice, memory_mb=config.training_memory_mb,
            # What loading the trained version needs to check it (the base model's folder).
            settings={"MODEL_DIR": config.model_dir, "DATA_DIR": "", "TORCH_THREADS": 1},
            search=job.search,
            parent_dir=parent_dir, parent=job.parent,
            test_dataset_dir=(revision_dir(config.data_dir, job.test_dataset_id, job.test_dataset_revision)
                              if job.test_dataset_id else None),
            train_metrics_rows=config.training_train_metrics_rows,
        )

    def _parent_dir(self, job: TrainingJob) -> str | None:
        """The files of the version the job keeps training from, on this replica
        (fetched from the bucket with S3 storage); LookupError when they are gone."""
        if job.parent_version_id is None:
            return None
        label = f"{job.parent['model']}@{job.parent['version']}" if job.parent else "the parent version"
        with self.sessions() as session:
            version = session.get(ModelVersion, job.parent_version_id)
            if version is None or not has_files(self.config.data_dir, version):
                raise LookupError(f"{label}, the version this job keeps training from, was deleted or its files "
                                  "were removed (INFER_USER_MODEL_VERSIONS_KEPT); start the job again from another.")
            version_format = version.format
        ensure_version_files(self.config, self.storage, None, job.parent_version_id, version_format, label,
                             with_venv=False)
        return version_dirs(self.config.data_dir, job.parent_version_id)[0]

    def _supervise(self, job_id: str, account_id: int, folder: str, request: TrainingRequest,
                   record: JobRecord) -> str:
        """Run the child to its end; what ended it: result, failed, cancelled,
        stopping, gone (the job was deleted) or how the process died."""
        read_end, write_end = os.pipe()
        try:
            with open_no_links(os.path.join(folder, "child.out"), "ab") as output:
                child = self.children.start_training(account_id, folder, request, write_end, output)
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        with self._children_lock:
            self._children[job_id] = child
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
            if self.stopping:
                ended = "stopping"
                continue
            state = record.save_progress(self.lease)
            if state in ("gone", "cancel"):
                ended = "gone" if state == "gone" else "cancelled"
            elif time.monotonic() >= next_measure:
                next_measure = time.monotonic() + MEASURE_S
                if record.measure(tree_bytes(folder), self.config):  # its checkpoints outgrew the quota
                    ended = "failed"
        if ended is None and self.stopping and record.result is None and record.failure is None:
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


def _job_due(now):
    return or_(TrainingJob.status == "queued", (TrainingJob.status == "running") & (TrainingJob.lease_until < now))


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

