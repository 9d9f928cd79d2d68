"""A loaded model: what the cache holds and what task code calls."""

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from enum import Enum

from .batcher import Batcher, DeadlineExceeded
from .token_batching import PreparedRunner


# A request of more items than a pass holds (a corpus-sized embedding request) is
# queued in parts of max_batch_size, this many at a time: each part takes its
# turn in the model's fair queue, so other accounts' requests run between them
# and one request never holds the model for all its length, while the next part
# waits ready so the model is never idle between two parts.
PARTS_IN_FLIGHT = 2


@dataclass(frozen=True)
class BatchSettings:
    max_batch_size: int = 32
    max_wait_s: float = 0.0
    max_queue: int = 256
    timeout_s: float = 60.0
    run_alone_inline: bool = True
    # Most padded tokens in one pass, for runners that tokenise ahead (0: no budget).
    max_batch_tokens: int = 0
    on_batch: Callable[[str, str, int, float], None] | None = None  # (model, task, batch size, seconds)


class Capability(str, Enum):
    """What a loaded model can do beyond its task runners, declared by its loader
    (ServedModel.declare); the routes that need one test for it."""

    # count_tokens(texts): the tokens the model reads of each text (usage on /v1).
    TOKEN_COUNTS = "token-counts"
    # Its vectors may be cut short (trained Matryoshka-style): /v1/embeddings' dimensions.
    SHORTER_VECTORS = "shorter-vectors"
    # Token-level generation, `completion` (model_registry/loaders/completion.py): the /v1 generation routes.
    COMPLETION = "completion"
    # Uploaded code (model.bin, inference.py) answering in its sandboxed worker: it
    # may do anything its author chose, e.g. classify without being sent labels.
    UPLOADED_CODE = "uploaded-code"
    # A classifier trained on its own labels, `trained_labels` (a training job's version):
    # it answers without labels, and scores only a subset of these when sent some.
    TRAINED_LABELS = "trained-labels"
    # A trained tabular model's columns, `input_columns` ({name: "numeric" | "categorical"}):
    # POST /predict checks a request's rows against them before queueing any.
    INPUT_COLUMNS = "input-columns"


class ServedModel:
    """One loaded model and the task functions it serves.

    ``runners`` maps a task name to a function taking a list of task inputs and
    returning one output per input, in order. Calls go through one Batcher per
    task, so concurrent requests share forward passes; a runner with `make_queue`
    (a decoder-only model's generations, loaders/continuous/task_queues.py) gives
    its own queue instead, one running batch that both generation tasks feed. A runner that is a
    PreparedRunner has its inputs tokenised on the request thread and its passes
    cut by the token budget (model_registry/token_batching.py).
    """

    def __init__(self, key: str, model, nbytes: int, device: str, runners: dict[str, Callable]):
        self.key = key
        self.model = model
        self.nbytes = nbytes
        self.device = device
        self.runners = runners
        # What runs its passes: "torch", "onnx", or "onnx-int8:<preset>" (INFER_BACKEND).
        self.backend = "torch"
        self.batch_settings = BatchSettings()
        self._batchers: dict[str, Batcher] = {}
        self._lock = threading.Lock()
        # Extra clean-up on eviction (a user model's worker process).
        self.on_close: Callable[[], None] | None = None
        # What it can do beyond its runners (Capability); the values that go with
        # some are below, meaningful only when declared.
        self.capabilities: frozenset[Capability] = frozenset()
        self.count_tokens: Callable[[list[str]], list[int]] = _undeclared
        self.completion = None
        self.trained_labels: list[str] = []
        self.input_columns: dict[str, str] = {}

    def declare(self, *, count_tokens: Callable[[list[str]], list[int]] | None = None, shorter_vectors=False,
                completion=None, uploaded_code=False, trained_labels: list[str] | None = None,
                input_columns: dict[str, str] | None = None) -> "ServedModel":
        """Add capabilities (with the values they come with), as the loader knows them."""
        declared = set(self.capabilities)
        if count_tokens is not None:
            self.count_tokens = count_tokens
            declared.add(Capability.TOKEN_COUNTS)
        if shorter_vectors:
            declared.add(Capability.SHORTER_VECTORS)
        if completion is not None:
            self.completion = completion
            declared.add(Capability.COMPLETION)
        if uploaded_code:
            declared.add(Capability.UPLOADED_CODE)
        if trained_labels is not None:
            self.trained_labels = trained_labels
            declared.add(Capability.TRAINED_LABELS)
        if input_columns is not None:
            self.input_columns = input_columns
            declared.add(Capability.INPUT_COLUMNS)
        self.capabilities = frozenset(declared)
        return self

    @property
    def tasks(self) -> list[str]:
        return list(self.runners)

    def run(self, task: str, inputs: list) -> list:
        settings = self.batch_settings
        batcher = self._batcher(task)
        if len(inputs) > settings.max_batch_size and isinstance(batcher, Batcher):
            return _run_in_parts(batcher, inputs, settings.max_batch_size, settings.timeout_s)
        return batcher.submit(inputs, settings.timeout_s)

    def run_nowait(self, task: str, inputs: list) -> Future:
        """Queue `inputs` and return the future of their outputs (Batcher.submit_nowait)."""
        return self._batcher(task).submit_nowait(inputs, self.batch_settings.timeout_s)

    def _batcher(self, task: str) -> Batcher:
        batcher = self._batchers.get(task)
        if batcher is None:
            with self._lock:
                batcher = self._batchers.get(task)
                if batcher is None:
                    runner = self.runners[task]
                    make_queue = getattr(runner, "make_queue", None)  # a generation's running batch
                    if make_queue is not None:
                        on_batch = self.batch_settings.on_batch
                        on_model_batch = (lambda name, size, seconds: on_batch(self.key, name, size, seconds)
                                          ) if on_batch else None
                        batcher = make_queue(self.key, on_model_batch, lambda: self._new_batcher(task, runner.static))
                    else:
                        batcher = self._new_batcher(task, runner)
                    self._batchers[task] = batcher
        return batcher

    def _new_batcher(self, task: str, runner) -> Batcher:
        settings = self.batch_settings
        on_batch = settings.on_batch
        prepared = isinstance(runner, PreparedRunner)
        return Batcher(
            runner.run if prepared else runner,
            name=f"{self.key}/{task}",
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_s,
            max_queue=settings.max_queue,
            run_alone_inline=settings.run_alone_inline,
            on_batch=(lambda size, seconds: on_batch(self.key, task, size, seconds)) if on_batch else None,
            prepare=runner.prepare if prepared else None,
            item_tokens=runner.tokens if prepared else None,
            max_batch_tokens=settings.max_batch_tokens,
        )

    def queue_lengths(self) -> dict[str, int]:
        """{task: requests waiting in its batch queue} (for /metrics)."""
        with self._lock:
            batchers = dict(self._batchers)
        return {task: batcher.queued() for task, batcher in batchers.items() if hasattr(batcher, "queued")}

    def close(self) -> None:
        """Stop the batch workers once their queues are drained (on eviction)."""
        with self._lock:
            for batcher in self._batchers.values():
                batcher.close()
        if self.on_close:
            self.on_close()


def _run_in_parts(batcher: Batcher, inputs: list, size: int, timeout_s: float) -> list:
    """The outputs of `inputs`, queued as parts of `size` items, PARTS_IN_FLIGHT at a
    time, in order; the first part that fails fails the whole, and the parts not yet
    run are taken out of the queue. Each part has the deadline a request has."""
    parts = deque(inputs[start:start + size] for start in range(0, len(inputs), size))
    pending: deque[Future] = deque()
    outputs: list = []
    try:
        while parts or pending:
            while parts and len(pending) < PARTS_IN_FLIGHT:
                pending.append(batcher.submit_nowait(parts.popleft(), timeout_s))
            try:
                outputs.extend(pending.popleft().result(timeout=timeout_s))
            except FutureTimeout:
                raise DeadlineExceeded(f"Model {batcher.name} did not answer within {timeout_s:g}s "
                                       "(INFER_REQUEST_TIMEOUT_S).") from None
    finally:
        for future in pending:
            future.cancel()
    return outputs


def _undeclared(texts: list[str]) -> list[int]:
    raise TypeError("this model declares no token counts (Capability.TOKEN_COUNTS)")
