"""Evaluations, one kind of background work (core/runner.py): a version run on
one of its account's datasets, and the task's metrics stored on the row.

The rows go through the version exactly as asynchronous predictions do: each
chunk of INFER_EVALUATION_CHUNK_ROWS rows is one request to the task's route
(its batch input), run as the account by the function the app hands over
(api/prediction_dispatch.py run_in_background), so an uploaded model's code
stays in its sandbox and the batchers and fair shares apply. A chunk the route
refuses is sent again row by row: a row that fails alone is counted (and the
first few kept, with why) and left out of the metrics, never failing the
evaluation. An evaluation fails only when no row was answered, when its
dataset is gone, or when the version is (404).

Claimed fairly between accounts, at most INFER_ACCOUNT_MAX_RUNNING_EVALUATIONS
of one account at once, on the predictions queue (it is predictions). Progress
(rows_done of rows_total) is saved after each chunk; a cancel is seen there
too. A request answered 429 or 503 (a model's queue full, a model loading) is
sent again after a pause before its rows count as failed. A process that
stops hands its evaluations back after their current chunk; one that dies
stops renewing the lease. Either way another process runs it again from the
start, up to INFER_PREDICTION_MAX_ATTEMPTS starts.
"""

import logging
import time
from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from core import leases
from core.fair_claims import FairClaims, WorkKind, leased
from core.runner import Runner
from core.settings import Settings
from core.tables import Evaluation, utcnow
from core.webhook_events import notify
from training.dataset_bundles import DatasetUnavailable, ensure_parsed_revision
from training.datasets import read_rows
from training.paths import revision_dir

from .evaluation_plans import PLANS, Plan, UnusableAnswer
from .runner import RunRequest, WaitAbandoned

log = logging.getLogger(__name__)

# Failed rows kept on the row, with why (all are counted).
FAILURES_KEPT = 20
# Answers that say "not now" (the model's queue is full, it is loading, a limit):
# the same request again after a pause, doubled each time, before its rows count as failed.
BUSY_STATUSES = (429, 503)
BUSY_RETRIES = 3
BUSY_PAUSE_S = 0.5


def _due(now):
    return or_(Evaluation.status == "queued",
               and_(Evaluation.status == "running", Evaluation.lease_until < now))


EVALUATIONS = WorkKind(Evaluation, due=_due, running=leased("running"), oldest_first=Evaluation.seq)


class Cancelled(Exception):
    pass


class Stopping(Exception):
    """This process stops: the evaluation goes back to the queue, to run again elsewhere."""


class EvaluationFailed(Exception):
    """The whole evaluation fails; the message says why."""


class EvaluationRunner(Runner):
    kind, queue, table = "evaluate", "predictions", Evaluation
    # A queue worker told to stop hands the row back; it runs again from the start elsewhere.
    cut_short = True

    def __init__(self, run_request: RunRequest, config: Settings, sessions, storage):
        lease = timedelta(seconds=config.prediction_lease_s)
        super().__init__(sessions, FairClaims(EVALUATIONS, lease, config.account_max_running_evaluations),
                         lease, poll_s=config.prediction_poll_s, slots=config.evaluation_threads)
        self.run_request = run_request
        self.config = config
        self.storage = storage

    def claimed_values(self) -> dict:
        return {"status": "running", "started_at": utcnow(), "attempts": Evaluation.attempts + 1,
                "rows_done": 0, "rows_failed": 0, "failures": []}

    def cancel(self, session, evaluation: Evaluation) -> None:
        """A queued evaluation is cancelled at once; a running one after its current chunk."""
        leases.cancel(session, evaluation, "evaluation")

    # --- one evaluation -------------------------------------------------------------------

    def run(self, evaluation_id: str) -> None:
        with self.sessions() as session:
            row = session.get(Evaluation, evaluation_id)
            if row is None:
                return
            job = _Job(row)
        if job.attempts > self.config.prediction_max_attempts:
            self._end(evaluation_id, "failed", f"The process running this evaluation stopped {job.attempts - 1} "
                                               "times; it was not run again.")
            return
        with self.renewing(evaluation_id):
            try:
                metrics, answered = self._evaluate(job)
            except WaitAbandoned:  # a request waiting for room in the rate limits gave up: which way?
                if self.stopping:
                    self.hand_back(evaluation_id)
                else:
                    self._end(evaluation_id, "cancelled", "Cancelled while it ran.")
                return
            except Stopping:
                self.hand_back(evaluation_id)
                return
            except Cancelled:
                self._end(evaluation_id, "cancelled", "Cancelled while it ran.")
                return
            except EvaluationFailed as exc:
                self._end(evaluation_id, "failed", str(exc))
                return
            except Exception as exc:  # recorded on the row: the owner reads why
                log.exception("evaluation %s", evaluation_id)
                self._end(evaluation_id, "failed", f"The evaluation stopped: {type(exc).__name__}: {exc}")
                return
        self._end(evaluation_id, "succeeded", f"{answered} rows answered and scored.", metrics)

    def _evaluate(self, job: "_Job") -> tuple[dict, int]:
        plan = PLANS[job.dataset_format]
        rows, folder = self._rows(job.dataset_id, job.dataset_revision)
        self._save(job.id, rows_total=len(rows))
        model = f"{job.model_name}@{job.version_number}"
        chunk_rows = max(1, min(self.config.evaluation_chunk_rows, self.config.max_batch_size))
        answered_rows, outputs, failures, failed = [], [], [], 0
        for start in range(0, len(rows), chunk_rows):
            chunk = rows[start:start + chunk_rows]
            for at, outcome in self._chunk(job, plan, model, chunk, start, folder):
                if isinstance(outcome, _Failure):
                    failed += 1
                    if len(failures) < FAILURES_KEPT:
                        failures.append({"row": at + 1, "status": outcome.status, "message": outcome.message})
                else:
                    answered_rows.append(rows[at])
                    outputs.append(outcome)
            if self._save(job.id, rows_done=start + len(chunk), rows_failed=failed, failures=list(failures)):
                raise Cancelled()
            if self.stopping:
                raise Stopping()
        if not answered_rows:
            first = f" The first: row {failures[0]['row']}: {failures[0]['message']}" if failures else ""
            raise EvaluationFailed(f"No row of dataset {job.dataset_id} was answered ({failed} failed).{first}")
        try:
            metrics = plan.score(answered_rows, outputs)
        except UnusableAnswer as exc:
            raise EvaluationFailed(f"The answers could not be scored: {exc}.") from None
        return {**metrics, "rows": len(rows), "rows_answered": len(answered_rows), "rows_failed": failed}, \
            len(answered_rows)

    def _rows(self, dataset_id: str, revision: int | None) -> tuple[list, str]:
        """The rows of the revision the evaluation reads (fetched from the shared store if
        another replica made it), and the folder their relative paths (images) are in."""
        try:
            ensure_parsed_revision(self.config, self.storage, dataset_id, revision or 1)
        except DatasetUnavailable as exc:
            raise EvaluationFailed(str(exc)) from None
        folder = revision_dir(self.config.data_dir, dataset_id, revision)
        try:
            rows = read_rows(folder)
        except FileNotFoundError:
            raise EvaluationFailed(f"Dataset {dataset_id} was deleted.") from None
        if not rows:
            raise EvaluationFailed(f"Dataset {dataset_id} has no rows.")
        return rows, folder

    def _chunk(self, job: "_Job", plan: Plan, model: str, chunk: list, start: int, folder: str):
        """(row index, its output or a _Failure) for each row of the chunk."""
        outcome = self._ask(job, plan, model, chunk, folder)
        if not isinstance(outcome, _Failure):
            return [(start + at, output) for at, output in enumerate(outcome)]
        if outcome.status == 404:  # the version (or its model) is gone: every row would say so
            raise EvaluationFailed(f"{model}: {outcome.message}")
        if len(chunk) == 1:
            return [(start, outcome)]
        # One bad row fails its whole chunk: each row alone, to keep the others.
        return [(start + at, self._single(job, plan, model, row, folder)) for at, row in enumerate(chunk)]

    def _single(self, job: "_Job", plan: Plan, model: str, row: dict, folder: str):
        outcome = self._ask(job, plan, model, [row], folder)
        return outcome if isinstance(outcome, _Failure) else outcome[0]

    def _ask(self, job: "_Job", plan: Plan, model: str, rows: list, folder: str):
        """The outputs of these rows, or a _Failure saying why the request gave none."""
        try:
            body = plan.body(model, rows, folder)
        except (UnusableAnswer, OSError) as exc:
            return _Failure(0, f"the row could not be read: {exc}")
        for retry in range(BUSY_RETRIES + 1):
            status, answer = self.run_request(job.account_id, plan.path, body, job.id,
                                              abandon=lambda: self.stopping or self._cancel_requested(job.id))
            if status not in BUSY_STATUSES or retry == BUSY_RETRIES or self.stopping:
                break
            time.sleep(BUSY_PAUSE_S * 2 ** retry)
        if status >= 400:
            message = answer.get("message") if isinstance(answer, dict) else None
            if message is None and isinstance(answer, dict) and isinstance(answer.get("error"), dict):
                message = answer["error"].get("message")  # /v1's routes answer OpenAI's error shape
            return _Failure(status, str(message or answer)[:500])
        try:
            return plan.outputs(answer, rows)
        except UnusableAnswer as exc:
            return _Failure(status, f"the answer could not be read: {exc}")

    # --- the row --------------------------------------------------------------------------

    def _save(self, evaluation_id: str, **values) -> bool:
        """Save progress on a running row; True when its owner asked to cancel it."""
        with self.sessions() as session:
            session.execute(update(Evaluation).where(Evaluation.id == evaluation_id, Evaluation.status == "running")
                            .values(**values))
            session.commit()
            row = session.get(Evaluation, evaluation_id)
            return row is None or row.status != "running" or row.cancel_requested

    def _cancel_requested(self, evaluation_id: str) -> bool:
        with self.sessions() as session:
            return bool(session.scalar(select(Evaluation.cancel_requested).where(Evaluation.id == evaluation_id)))

    def _end(self, evaluation_id: str, status: str, message: str, metrics: dict | None = None) -> None:
        with self.sessions() as session:
            row = session.get(Evaluation, evaluation_id)
            if row is None or row.status != "running":
                return  # the model was deleted meanwhile
            if row.cancel_requested and status != "failed":
                status, message, metrics = "cancelled", "Cancelled while it ran.", None
            ended = session.execute(update(Evaluation).where(Evaluation.id == evaluation_id,
                                                             Evaluation.status == "running")
                                    .values(status=status, message=message, metrics=metrics, finished_at=utcnow(),
                                            lease_until=None))
            if ended.rowcount == 1:
                notify(session, row.account_id, "evaluation", row.id, row.webhook)  # its webhook, if it has one
            session.commit()
        log.info("evaluation %s: %s: %s", evaluation_id, status, message)


class _Job:
    """What a run reads of its row once, before the session closes."""

    def __init__(self, row: Evaluation):
        self.id, self.account_id, self.attempts = row.id, row.account_id, row.attempts
        self.model_name, self.version_number = row.model_name, row.version_number
        self.dataset_id, self.dataset_format, self.dataset_revision = (row.dataset_id, row.dataset_format,
                                                                       row.dataset_revision)


class _Failure:
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message

