"""What a trainer is: the task it trains, what it trains from, its hyperparameters,
and how one run turns rows of a dataset into the files of a model version.

A trainer wraps one well-kept library (SetFit, sentence-transformers, transformers
with PEFT, scikit-learn); it writes no training loop of its own. It runs in the
job's child process (training/child.py), never in a web worker, and imports its
library inside train() so that the web workers, which only read its class
attributes (hyperparameter schema, accepted dataset formats), stay light.

Keeping on: a job may start from one of the account's own trained versions
(its parent) instead of a catalogue model. A trainer that can says which formats
of its own versions it continues from (continues_from_formats) and finds the
parent's files at run.parent_dir; what continuing meant for it (its weights
trained on, a warm start, a refit) goes in TrainingResult.continued and the log.

Train-set and test metrics: every epoch also reports the task's metrics on the
training rows, or a seeded sample of at most run.train_metrics_rows of them, as
train_<metric>; a job with a test dataset scores the kept epoch on run.test_rows
once, at the end (TrainingResult.test_metrics).

Resuming: a run's checkpoint_dir survives a crash of the child. train() saves a
checkpoint there at the end of every epoch and, when it finds one, carries on
from the last instead of starting again. Epoch statistics reported again for an
epoch (the crash came after the report, before the checkpoint) replace the
earlier ones.
"""

from abc import ABC, abstractmethod
import random
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from marshmallow import Schema, fields, validate


class Reporter(Protocol):
    def log(self, line: str) -> None:
        """A line for the job's log (GET /jobs/{id}/log)."""

    def epoch(self, stats: dict) -> None:
        """One finished epoch's statistics, as soon as it has them. Keys (see EPOCH_KEYS):
        epoch (1-based), step, train_loss, validation_loss, learning_rate,
        elapsed_s, and the task's metrics (trainers/metrics.py)."""


# Every epoch's statistics carry these (None where a trainer has no such value:
# a scikit-learn fit has no learning rate).
EPOCH_KEYS = ("epoch", "step", "train_loss", "validation_loss", "learning_rate", "elapsed_s")


class TrainingFailed(Exception):
    """The run cannot go on; the message tells the job's owner why (what to change)."""


@dataclass(frozen=True)
class TrainingRun:
    job_id: str
    task: str
    # The catalogue key of the model trained from (None: the trainer needs none,
    # scikit-learn) and the folder of its files, resolved like every catalogue
    # model (local model dir, HF cache, a package); base_model_file names the one
    # weights file of a single-file model (GGUF).
    base_model: str | None
    base_model_dir: str | None
    base_model_file: str | None
    # Validated, every default filled in: what the job reports it used.
    hyperparameters: dict
    # Normalised rows (training/datasets: one dict per example, keys by format).
    train_rows: list
    validation_rows: list
    dataset_format: str
    # Where the training rows' relative paths (images) point into.
    dataset_dir: str
    # Kept across crashes of the job: epoch checkpoints go here.
    checkpoint_dir: str
    # The new version's files: everything the serving format (TrainingResult.format) needs.
    output_dir: str
    reporter: Reporter
    torch_threads: int = 1
    # Keep training: the folder of the account's version trained on from (read-only)
    # and which it is ({"model", "version"}); None for a run from a catalogue model.
    parent_dir: str | None = None
    parent: dict | None = None
    # Scored once, on the kept epoch (empty: no test dataset).
    test_rows: list = field(default_factory=list)
    # Where the validation and test rows' relative paths point into, when they come
    # from datasets of their own (None: dataset_dir, the rows were split from it).
    validation_dataset_dir: str | None = None
    test_dataset_dir: str | None = None
    # The most training rows the per-epoch train_ metrics are computed on.
    train_metrics_rows: int = 1000


@dataclass
class TrainingResult:
    # The upload format (uploads/formats) that serves output_dir.
    format: str
    tasks: list
    # The epoch whose model was kept, and its statistics (what the version lists).
    best_epoch: int
    metrics: dict
    description: str = ""
    # Training examples processed per second (the benchmark reads it).
    samples_per_second: float | None = None
    extra: dict = field(default_factory=dict)
    # The kept epoch's metrics on the test rows (None: no test dataset).
    test_metrics: dict | None = None
    # With a parent: what continuing from it meant ("continued from its weights",
    # "warm start: ...", "refit: ..."), said in the job's log and the version.
    continued: str = ""


def train_metrics_sample(rows: list, most: int, seed: int) -> list:
    """The training rows the train_ metrics are computed on: all of them, or a
    seeded sample of `most` (the same rows every epoch, in their order)."""
    if len(rows) <= most:
        return list(rows)
    chosen = sorted(random.Random(seed).sample(range(len(rows)), most))
    return [rows[i] for i in chosen]


def prefixed(metrics: dict, prefix: str) -> dict:
    """{"accuracy": ...} -> {"train_accuracy": ...}: the train-set copy of an epoch's metrics."""
    return {f"{prefix}{key}": value for key, value in metrics.items()}


class BaseHyperparameters(Schema):
    """What every trainer takes; a trainer's schema extends it (ranges are the
    documented limits; a value outside answers 422 naming the field)."""

    class Meta:
        ordered = True

    epochs = fields.Integer(load_default=3, validate=validate.Range(1, 100))
    batch_size = fields.Integer(load_default=16, validate=validate.Range(1, 512))
    learning_rate = fields.Float(load_default=2e-5, validate=validate.Range(min=1e-7, max=1.0))
    seed = fields.Integer(load_default=42, validate=validate.Range(0, 2**31 - 1))
    # Stop when the validation loss has not improved for this many epochs and keep
    # the best epoch; 0: train every epoch (the best is still the one kept).
    early_stopping_patience = fields.Integer(load_default=0, validate=validate.Range(0, 100))


class TaskTrainer(ABC):
    # The task a trained version serves (a TaskSpec name), and the library it wraps.
    task: ClassVar[str]
    library: ClassVar[str]
    # The dataset formats (training/datasets) it trains on.
    dataset_formats: ClassVar[tuple[str, ...]]
    # The catalogue key trained from when the job names none (None: no base model).
    default_base_model: ClassVar[str | None]
    # The catalogue loaders whose models it can train from (empty: no base model).
    base_loaders: ClassVar[tuple[str, ...]]
    hyperparameters: ClassVar[type[Schema]] = BaseHyperparameters
    # What it leaves out, said in the docs and the job's log.
    limitations: ClassVar[str] = ""
    # A classifier of the dataset's labels (a text or image "label" per row).
    classifies_its_labels: ClassVar[bool] = False
    # The formats of its own trained versions it can keep training from (empty: it
    # cannot; a job naming a version as its base model is refused when started).
    continues_from_formats: ClassVar[tuple[str, ...]] = ()
    # Whether it scores a test dataset at the end (test_dataset_id); one that does
    # not refuses the job when started.
    scores_test_rows: ClassVar[bool] = False
    # Files a callback adds to each epoch checkpoint after the Trainer's own
    # trainer_state.json: a checkpoint without them is not complete yet (resumed
    # from, or copied to the shared store, only once it is).
    checkpoint_files: ClassVar[tuple[str, ...]] = ()

    def check_parent(self, hyperparameters: dict, parent_hyperparameters: dict) -> str | None:
        """Before a job that continues from a version is queued: what stops these
        hyperparameters continuing from one trained with the parent's, or None."""
        return None

    def check(self, hyperparameters: dict, dataset_stats: dict) -> str | None:
        """Before a job is queued: what is wrong with training on this dataset with
        these hyperparameters (the 422's message), or None."""
        return None

    def sample_input(self, train_rows: list, sample: object) -> object:
        """A batch item the job runs the trained version on before publishing it
        (as a build runs an upload on `sample`, its task's: the task spec's)."""
        if self.classifies_its_labels:  # scored on every trained label, as a request naming them all is
            sample["labels"] = sorted({str(row["label"]) for row in train_rows})
        return sample

    @abstractmethod
    def train(self, run: TrainingRun) -> TrainingResult:
        """Train, report every epoch, write the version's files to run.output_dir
        (with a config.json naming its tasks) and say what was kept."""
