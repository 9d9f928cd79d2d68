"""What crosses the process boundary between the runners (training/jobs.py,
training/dataset_parses.py) and their sandboxed children, as typed records: the
runner builds one, the sandbox maps its paths to the child's
(training/sandboxed.py), it travels as JSON (`to_dict`), and the other side reads
it back (`from_dict`).

- TrainingRequest: one attempt of a training job (the job folder's job.json,
  read by training/child.py).
- TrainingResult: what a training child reports at its end (its "result" event).
- ParseRequest: one parse of a dataset (parse_request.json, read by
  training/datasets/child.py).
- ParseOutcome: a parse's end, recorded on the dataset's row.

No imports beyond the standard library: the children load this first.
"""

from dataclasses import asdict, dataclass, field, fields


class Record:
    """to_dict / from_dict for a dataclass of JSON values."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """The record, from what `to_dict` wrote; keys it does not know are left
        out, and a missing one without a default raises TypeError."""
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__} is read from a JSON object, not {type(data).__name__}")
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass(frozen=True)
class TrainingRequest(Record):
    """One attempt of a training job, as its child runs it. Paths are the
    host's until ChildSandbox.child_request maps them into the sandbox."""

    job_id: str
    task: str
    base_model: str | None  # a catalogue key, or None (a trainer that starts from nothing)
    base_model_dir: str | None
    base_model_file: str | None  # the file in base_model_dir a loader reads (a GGUF), when there is one
    hyperparameters: dict
    dataset_format: str
    dataset_dir: str
    validation_dataset_dir: str | None
    validation_split: float | None
    torch_threads: int
    nice: int  # the child nices itself this much (unsandboxed)
    memory_mb: int  # the child's address-space cap, on CPU
    # What loading the trained version needs to check it (the base model's folder).
    settings: dict = field(default_factory=dict)
    # In the sandbox, which starts the child niced already: its scheduler group's niceness.
    autogroup_nice: int = 0
    # A search job's request (training/search.py runs it); None: train once.
    search: dict | None = None
    # Keep training: the parent version's files (read-only) and which it is ({"model", "version"}).
    parent_dir: str | None = None
    parent: dict | None = None
    # The test dataset scored once at the end, and how many training rows each epoch's train_ metrics read.
    test_dataset_dir: str | None = None
    train_metrics_rows: int = 1000


@dataclass(frozen=True)
class TrainingResult(Record):
    """What a training child reports when the trained version answered its samples."""

    format: str
    tasks: list
    best_epoch: int | None
    metrics: dict | None
    description: str = ""
    samples_per_second: float | None = None
    test_metrics: dict | None = None
    continued: str = ""  # with a parent: what continuing from it meant (trainers/base.py)


@dataclass(frozen=True)
class ParseRequest(Record):
    """One parse of a dataset, as its child runs it."""

    source: str  # the uploaded file
    limits: dict  # DatasetLimits.from_request (training/datasets/base.py) reads it, and max_memory_mb
    format: str | None = None  # None: the parser detects it
    options: dict = field(default_factory=dict)
    nice: int = 0  # the child nices itself this much (unsandboxed)
    autogroup_nice: int = 0


@dataclass(frozen=True)
class ParseOutcome(Record):
    """A parse's end: "ready" with its format and statistics, or "failed" saying why."""

    status: str  # "ready" | "failed"
    message: str
    format: str | None = None
    stats: dict | None = None
    log: list = field(default_factory=list)  # log lines ({timestamp, message}) to add to the dataset's

    @classmethod
    def failed(cls, message: str, log: list | None = None) -> "ParseOutcome":
        return cls("failed", message, log=list(log or []))
