"""A running job's row, as its runner keeps it: what the child process reports
(log lines, epoch statistics, the result) saved as it comes, the lease renewed,
and a cancel noticed."""

import json
import os
import threading
from datetime import timedelta

from sqlalchemy import func, update

from core.tables import TrainingJob, utcnow
from core.webhook_events import notify
from uploads.quotas import over_quota_message, stored_usage

from .child_records import TrainingResult

# The service's own settings and credentials: never in a child's environment.
SECRET_PREFIXES = ("INFER_", "AWS_")
SECRET_NAMES = {"DATABASE_URL"}


def child_environment(extra: dict | None = None) -> dict:
    """The environment of a training or parsing process: the service's, without
    its secrets (a child needs none: it sees files, not the database or S3)."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(SECRET_PREFIXES) and name not in SECRET_NAMES}
    env["TOKENIZERS_PARALLELISM"] = "false"  # the child's threads are bounded by its settings
    env.update(extra or {})
    return env


def timestamp() -> str:
    """Now, as the API writes times (api/models.py iso_time), without importing
    the web layer into the runners and their children."""
    return utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


def log_line(message: str) -> dict:
    return {"timestamp": timestamp(), "message": message}


def best_by_validation_loss(epochs: list[dict]) -> int | None:
    scored = [entry for entry in epochs if entry.get("validation_loss") is not None]
    if not scored:
        return epochs[-1]["epoch"] if epochs else None
    return min(scored, key=lambda entry: entry["validation_loss"])["epoch"]


def merge_trials(saved: list[dict], reported: list[dict]) -> list[dict]:
    """A search's leaderboard (training/search.py): each configuration once, its
    latest report replacing earlier ones (running -> kept, a resumed attempt's
    report again), ranked ones first in rank order, then by trial number."""
    merged = {entry["trial"]: entry for entry in saved}
    for entry in reported:
        merged[entry["trial"]] = entry
    return sorted(merged.values(), key=lambda entry: (entry.get("rank") is None, entry.get("rank") or 0,
                                                      entry["trial"]))


class JobRecord:
    def __init__(self, sessions, job_id: str, keep_chars: int):
        self.sessions = sessions
        self.job_id = job_id
        self.keep_chars = keep_chars
        self.model_name = ""
        self.result: TrainingResult | None = None
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._new_lines: list[str] = []
        self._new_epochs: list[dict] = []
        self._new_trials: list[dict] = []
        self._rows: tuple[int, int] | None = None

    def load(self) -> TrainingJob | None:
        with self.sessions() as session:
            job = session.get(TrainingJob, self.job_id)
            if job is not None:
                self.model_name = job.model_name
                session.expunge(job)
            return job

    def started(self, attempt: int) -> None:
        with self.sessions() as session:
            session.execute(update(TrainingJob).where(TrainingJob.id == self.job_id).values(
                attempts=attempt, started_at=func.coalesce(TrainingJob.started_at, utcnow()),
                message="Running."))
            session.commit()

    # --- what the child reports (its reader thread) -----------------------------------

    def read_events(self, stream) -> None:
        with stream:
            for line in stream:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # the child writes only JSON lines; anything else is not an event
                self._take(event)

    def _take(self, event: dict) -> None:
        kind = event.get("event")
        with self._lock:
            if kind == "log":
                self._new_lines.append(str(event.get("line", "")))
            elif kind == "epoch" and isinstance(event.get("stats"), dict) and "epoch" in event["stats"]:
                self._new_epochs.append(event["stats"])
            elif kind == "trial" and isinstance(event.get("trial"), dict) and "trial" in event["trial"]:
                self._new_trials.append(event["trial"])
            elif kind == "rows":
                self._rows = (int(event["train"]), int(event["validation"]))
            elif kind == "result":
                try:
                    self.result = TrainingResult.from_dict(event.get("result"))
                except TypeError as exc:  # not what training/child.py sends
                    self.failure = f"The training process reported a result the service cannot read ({exc})."
            elif kind == "failed":
                self.failure = str(event.get("message", ""))

    def add_log(self, line: str) -> None:
        with self._lock:
            self._new_lines.append(line)

    # --- saving -----------------------------------------------------------------------

    def save_progress(self, lease: timedelta | None = None) -> str:
        """Save what came since the last save and renew the lease: "gone" if the
        job was deleted, "cancel" if its owner asked it to stop, else "ok"."""
        with self._lock:
            lines, self._new_lines = self._new_lines, []
            epochs, self._new_epochs = self._new_epochs, []
            trials, self._new_trials = self._new_trials, []
            rows = self._rows
        with self.sessions() as session:
            job = session.get(TrainingJob, self.job_id)
            if job is None:
                return "gone"
            if epochs:
                # An epoch reported again (its attempt crashed before its
                # checkpoint) replaces the earlier report: each epoch once.
                merged = {entry["epoch"]: entry for entry in job.epochs or []}
                for entry in epochs:
                    # A resumed run's account of an earlier epoch fills a gap only.
                    if entry.pop("restored", False) and entry["epoch"] in merged:
                        continue
                    merged[entry["epoch"]] = entry
                job.epochs = [merged[epoch] for epoch in sorted(merged)]
                job.best_epoch = best_by_validation_loss(job.epochs)
            if trials:
                job.trials = merge_trials(job.trials or [], trials)
            if lines:
                job.log = self._append(job.log, lines)
            if rows:
                job.train_rows, job.validation_rows = rows
            if lease is not None:
                job.lease_until = utcnow() + lease
            session.commit()
            return "cancel" if job.cancel_requested else "ok"

    def measure(self, folder_bytes: int, config: dict) -> bool:
        """Record what the job's folder takes now (it counts in the account's
        stored bytes while the job lasts); True, with `failure` saying so, when
        it takes the account over its quota."""
        with self.sessions() as session:
            job = session.get(TrainingJob, self.job_id)
            if job is None:
                return False
            job.stored_bytes = folder_bytes
            session.commit()
            problem = over_quota_message(config, stored_usage(session, job.account_id, excluding_job=self.job_id),
                                         "This job's checkpoints and output", folder_bytes)
        if problem:
            self.failure = problem + " Or train a smaller base model: its checkpoints take less."
        return problem is not None

    def _append(self, log: str, lines: list[str]) -> str:
        stamp = timestamp()
        text = (log or "") + "".join(f"{stamp} {line.rstrip()}\n" for line in lines)
        return text[-self.keep_chars:]

    def finish(self, status: str, message: str, tail: str = "", best_epoch: int | None = None,
               metrics: dict | None = None, samples_per_second: float | None = None) -> None:
        if tail:
            self.add_log("the end of the training process's output:\n" + tail)
        self.add_log(f"{status}: {message}")
        self.save_progress()
        with self.sessions() as session:
            job = session.get(TrainingJob, self.job_id)
            if job is None:
                return
            job.status, job.message, job.finished_at, job.lease_until = status, message, utcnow(), None
            job.stored_bytes = 0  # its folder is gone
            if best_epoch is not None:
                job.best_epoch = best_epoch
            if metrics is not None:
                job.metrics = metrics
            elif job.best_epoch is not None:
                job.metrics = next((e for e in job.epochs or [] if e["epoch"] == job.best_epoch), None)
            if samples_per_second is not None:
                job.samples_per_second = samples_per_second
            notify(session, job.account_id, "training_job", job.id, job.webhook)  # its webhook, if it has one
            session.commit()

    def requeue(self, message: str, tail: str = "") -> None:
        """Back in the queue, to resume from its checkpoint (attempts counts the starts)."""
        if tail:
            self.add_log("the end of the training process's output:\n" + tail)
        self.add_log(message)
        self.save_progress()
        with self.sessions() as session:
            session.execute(update(TrainingJob).where(TrainingJob.id == self.job_id, TrainingJob.status == "running")
                            .values(status="queued", lease_until=None, message=message))
            session.commit()
