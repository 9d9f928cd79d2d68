"""Runs batches: files of task requests (predictions/batch_files.py), line by
line, as their account, and deletes old ones.

A batch is a row (core/tables.py Batch) claimed with a lease, fairly between
accounts (core/fair_claims.py: one account runs at most
INFER_ACCOUNT_MAX_RUNNING_BATCHES at once, across every process). Each line is
run by the function asynchronous predictions use (api/prediction_dispatch.py,
handed over by the app): the route's own schema, limits, model resolution,
batcher and errors, so a line answers exactly what the same request sent with
the account's key answers.

A batch must not crowd out anyone's interactive requests: it sends at most
INFER_BATCH_LINES_IN_FLIGHT lines at once, and they enter the models' batchers
and fair queues as its account's requests, taking their turn like any other.

The answers are appended to the output file in the input's order, a chunk of
lines at a time; after each chunk the row records how many lines are done and
how long the output is. A process that dies mid-batch stops renewing its
lease; the next to claim the batch cuts the output back to what was recorded
and goes on from the next line (a line may run twice: an inference has no side
effects). Cancelling stops it after the chunk in flight; the output keeps the
lines answered so far. With S3 storage the files travel between replicas
through the bucket (predictions/batch_store.py).
"""

import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from itertools import islice

from sqlalchemy import and_, or_, select, update

from core.fair_claims import FairClaims, WorkKind, leased
from core.runner import Runner
from core.settings import Settings
from core.tables import Batch, utcnow
from core.webhook_events import notify

from . import batch_files, batch_store
from .batch_files import INPUT_FILE, OUTPUT_FILE, Line, answer_line, parse_line, request_lines
from .runner import RunRequest, WaitAbandoned

log = logging.getLogger(__name__)

FINISHED = ("completed", "failed", "cancelled")
# The most of an output fetched from the bucket: the service's own object, under a
# key no upload URL names; bounded all the same.
OUTPUT_MAX_BYTES = 1 << 40


def _due(now):
    """Waiting, or claimed by a process that stopped renewing its lease."""
    return or_(Batch.status == "queued", and_(Batch.status == "running", Batch.lease_until < now))


BATCHES = WorkKind(Batch, due=_due, running=leased("running"), oldest_first=Batch.seq)


class BatchRunner(Runner):
    """Batches, one kind of background work (core/runner.py)."""

    kind, queue, table = "batch", "batches", Batch
    # stop() ends a run itself, after the chunk in flight, handing the batch back: it resumes elsewhere.
    cut_short = False

    def __init__(self, run_request: RunRequest, config: Settings, sessions, storage=None):
        lease = timedelta(seconds=config.prediction_lease_s)
        super().__init__(sessions, FairClaims(BATCHES, lease, config.account_max_running_batches), lease,
                         poll_s=config.prediction_poll_s, slots=config.batch_threads)
        self.run_request = run_request
        self.config = config
        self.storage = storage  # uploads/storage.py: with S3, the files travel through the bucket

    def claimed_values(self) -> dict:
        return {"status": "running", "started_at": utcnow(), "attempts": Batch.attempts + 1}

    def upkeep(self) -> None:
        self.housekeeping()

    # --- one batch -------------------------------------------------------------------

    def run(self, row_id: str) -> None:
        with self.sessions() as session:
            row = session.get(Batch, row_id)
            account_id, done, output_bytes = row.account_id, row.done_lines, row.output_bytes
        data_dir = self.config.data_dir
        source = batch_files.input_path(data_dir, row_id)
        with self.renewing(row_id):
            batch_store.fetch_if_behind(self.storage, data_dir, row_id, INPUT_FILE, 0,
                                        self.config.batch_max_input_bytes)
            if not os.path.exists(source):
                self._finish(row_id, "failed", "Its input file is gone from the data dir.")
                return
            batch_store.fetch_if_behind(self.storage, data_dir, row_id, OUTPUT_FILE, output_bytes, OUTPUT_MAX_BYTES)
            done, output_bytes = self._resume_point(row_id, done, output_bytes)
            outcome = self._run_lines(row_id, account_id, source, done, output_bytes)
            batch_store.put(self.storage, data_dir, row_id, OUTPUT_FILE)
        if outcome == "handed back":
            self.hand_back(row_id)
        else:
            self._finish(row_id, *outcome)

    def _resume_point(self, row_id: str, done: int, output_bytes: int) -> tuple[int, int]:
        """(lines done, output bytes) to go on from. The output normally holds at
        least what the row records (anything past it is cut). When it holds less
        (the batch ran on another replica, which died before sharing its output),
        it goes on from the complete lines it holds, and the row says so."""
        target = batch_files.output_path(self.config.data_dir, row_id)
        if output_bytes == 0 or (os.path.exists(target) and os.path.getsize(target) >= output_bytes):
            return done, output_bytes
        kept = b""
        if os.path.exists(target):
            with open(target, "rb") as output:
                held = output.read()
            kept = held[:held.rfind(b"\n") + 1]
        lines = kept.splitlines()
        failed = sum(1 for line in lines if json.loads(line).get("error"))
        with self.sessions() as session:
            session.execute(update(Batch).where(Batch.id == row_id).values(
                done_lines=len(lines), failed_lines=failed, output_bytes=len(kept)))
            session.commit()
        log.info("batch %s resumes after %d lines (its record said %d)", row_id, len(lines), done)
        return len(lines), len(kept)

    def _run_lines(self, row_id: str, account_id: int, source: str, done: int, output_bytes: int):
        """Answer the lines after the first `done`, a chunk at a time; the outcome:
        (status, message) or "handed back" (this process stops)."""
        in_flight = max(1, self.config.batch_lines_in_flight)
        target = batch_files.output_path(self.config.data_dir, row_id)
        remaining = enumerate(islice(request_lines(source), done, None), start=done + 1)

        def answer(numbered) -> tuple[str, bool]:
            number, text = numbered
            line = parse_line(text)
            if line.error:
                return answer_line(row_id, number, line, None, None)
            try:
                return answer_line(row_id, number, line, *self._run_one(account_id, row_id, number, line))
            except WaitAbandoned:
                raise  # the batch stops: this line is answered when it resumes, or never
            except Exception:  # an answer that cannot be written: this line's error, never the batch's
                log.exception("batch %s line %d", row_id, number)
                return answer_line(row_id, number, Line(line.custom_id), 500,
                                   {"message": "Internal server error while writing this line's answer."})

        with open(target, "ab"):
            pass  # made if new
        with open(target, "r+b") as output, ThreadPoolExecutor(in_flight, thread_name_prefix=f"batch {row_id}") as pool:
            output.truncate(output_bytes)  # lines a dead process wrote past its last record are answered again
            output.seek(output_bytes)
            while True:
                if self.stopping:
                    return "handed back"
                if self._cancel_requested(row_id):
                    return "cancelled", "Cancelled: the output holds the lines answered before."
                chunk = list(islice(remaining, in_flight))
                if not chunk:
                    return "completed", ""
                try:
                    answered = list(pool.map(answer, chunk))
                except WaitAbandoned:  # the chunk's answers so far are dropped: none is recorded
                    continue  # the loop's first checks say why
                output.write("".join(text for text, _ in answered).encode())
                output.flush()
                os.fsync(output.fileno())  # recorded as done only once it is on disk
                self._record(row_id, len(chunk), sum(failed for _, failed in answered), output.tell(), source)

    def _run_one(self, account_id: int, row_id: str, number: int, line: Line) -> tuple[int, object]:
        try:
            # A line waiting for room in the account's rate limits stops waiting
            # when the batch is cancelled or the process stops.
            return self.run_request(account_id, line.url, line.body, f"{row_id}-{number}",
                                    abandon=lambda: self.stopping or self._cancel_requested(row_id))
        except WaitAbandoned:
            raise
        except Exception:  # the dispatch renders a route's errors; this is one it did not expect
            log.exception("batch %s line %d", row_id, number)
            return 500, {"message": "Internal server error while running this line."}

    def _cancel_requested(self, row_id: str) -> bool:
        with self.sessions() as session:
            return bool(session.scalar(select(Batch.cancel_requested).where(Batch.id == row_id)))

    def _record(self, row_id: str, lines: int, failed: int, output_bytes: int, source: str) -> None:
        with self.sessions() as session:
            session.execute(update(Batch).where(Batch.id == row_id, Batch.status == "running").values(
                done_lines=Batch.done_lines + lines, failed_lines=Batch.failed_lines + failed,
                output_bytes=output_bytes, stored_bytes=os.path.getsize(source) + output_bytes))
            session.commit()

    def _finish(self, row_id: str, status: str, message: str) -> None:
        with self.sessions() as session:
            row = session.get(Batch, row_id)
            if row is None or row.status != "running":
                return  # deleted meanwhile
            row.status, row.message, row.completed_at, row.lease_until = status, message, utcnow(), None
            notify(session, row.account_id, "batch", row.id, row.webhook)
            session.commit()
        log.info("batch %s %s", row_id, status)

    # --- retention --------------------------------------------------------------------

    def housekeeping(self) -> None:
        """Delete batches past their retention, with their files."""
        cutoff = utcnow() - timedelta(seconds=float(self.config.batch_retention_s))
        with self.sessions() as session:
            old = session.scalars(select(Batch.id).where(Batch.status.in_(FINISHED), Batch.completed_at < cutoff)
                                  .limit(100)).all()
            for batch_id in old:
                shutil.rmtree(batch_files.batch_dir(self.config.data_dir, batch_id), ignore_errors=True)
                batch_store.forget(self.storage, batch_id)
                session.execute(Batch.__table__.delete().where(Batch.id == batch_id))
            session.commit()
