"""Dataset parses, one kind of background work (core/runner.py): a dataset
uploaded is a row in `processing`; a runner claims it with a lease, parses it in
a sandboxed child (training/parsing.py) and records the outcome on the row.

A process that dies mid-parse stops renewing the lease and another takes the
parse over once it runs out; a queue worker that stops hands it back at once.
Parses are claimed fairly between accounts, at most
INFER_ACCOUNT_MAX_RUNNING_PARSES of one account at once (core/fair_claims.py).
Every web process runs one at a time (INFER_TRAINER), or the queue's workers do.
"""

import logging
import shutil
from datetime import timedelta

from sqlalchemy import or_, select

from core.fair_claims import FairClaims, WorkKind, leased
from core.runner import Runner
from core.settings import Settings
from core.tables import Dataset, utcnow
from sandbox import SandboxUnavailable
from uploads.archive import tree_bytes

from .child_records import ParseOutcome
from .dataset_bundles import discard_parsed_dataset, store_parsed_dataset
from .parsing import run_parse
from .paths import dataset_dir
from .records import log_line

log = logging.getLogger(__name__)


def _parse_due(now):
    return (Dataset.status == "processing") & or_(Dataset.lease_until.is_(None), Dataset.lease_until < now)


PARSES = WorkKind(Dataset, due=_parse_due, running=leased("processing"), oldest_first=Dataset.created_at)


class DatasetParses(Runner):
    kind, queue, table = "parse", "datasets", Dataset

    def __init__(self, config: Settings, sessions, storage, children):
        lease = timedelta(seconds=config.training_lease_s)
        super().__init__(sessions, FairClaims(PARSES, lease, config.account_max_running_parses), lease,
                         poll_s=config.training_poll_s)
        self.config = config
        self.storage = storage
        self.children = children  # training/sandboxed.py ChildSandbox, shared with the training jobs

    def upkeep(self) -> None:
        """For S3 storage: datasets whose upload has arrived in the bucket wait for a parse."""
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

    def run(self, dataset_id: str) -> None:
        """Parse a dataset this process claimed and record the outcome on its row."""
        folder = dataset_dir(self.config.data_dir, dataset_id)
        with self.renewing(dataset_id):
            outcome = self._outcome(dataset_id, folder)
        with self.sessions() as session:
            dataset = session.get(Dataset, dataset_id)
            if dataset is None:  # deleted while it was parsed
                shutil.rmtree(folder, ignore_errors=True)
                discard_parsed_dataset(self.storage, dataset_id)
                return
            dataset.status = outcome.status
            dataset.format = outcome.format or dataset.format
            dataset.stats = outcome.stats
            dataset.message = outcome.message
            dataset.parse_log = [*dataset.parse_log, *outcome.log]
            dataset.stored_bytes = tree_bytes(folder)
            dataset.finished_at = utcnow()
            dataset.lease_until = None
            session.commit()
        log.info("dataset %s: %s: %s", dataset_id, outcome.status, outcome.message)

    def _outcome(self, dataset_id: str, folder: str) -> ParseOutcome:
        try:
            outcome = run_parse(self.config, self.sessions, self.storage, self.children, dataset_id, folder)
            store_parsed_dataset(self.config, self.storage, dataset_id, outcome)  # for the other replicas (S3)
        except SandboxUnavailable as exc:  # never parsed unconfined
            return ParseOutcome.failed(f"The dataset could not be parsed: {exc}")
        except Exception as exc:  # a fetch from S3 failed, the disk is full...
            log.exception("dataset %s", dataset_id)
            return ParseOutcome.failed(f"The dataset could not be parsed: {type(exc).__name__}: {exc}")
        return outcome
