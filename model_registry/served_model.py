"""A loaded model: what the cache holds and what task code calls."""

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from .batcher import Batcher
from .token_batching import PreparedRunner


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


class ServedModel:
    """One loaded model and the task functions it serves.

    ``runners`` maps a task name to a function taking a list of task inputs and
    returning one output per input, in order. Calls go through one Batcher per
    task, so concurrent requests share forward passes. A runner that is a
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
        # Uploaded code (model.bin, inference.py) answering in its sandboxed
        # worker: it may do anything its author chose, e.g. classify without
        # being sent labels.
        self.runs_uploaded_code = False
        # A classifier trained on its own labels (a training job's version): it
        # answers without labels, and scores only a subset of these when sent some.
        self.trained_labels: list[str] | None = None
        # A trained tabular model's columns, {name: "numeric" | "categorical"}:
        # POST /predict checks a request's rows against them before queueing any.
        self.input_columns: dict[str, str] | None = None
        # What the OpenAI-compatible API needs beyond the task runners (set by
        # the loaders that can provide it; None where a model cannot, such as
        # uploaded code): token counts of texts as the model reads them ...
        self.count_tokens: Callable[[list[str]], list[int]] | None = None
        # ... whether its vectors may be cut short (trained Matryoshka-style) ...
        self.truncatable_vectors: bool = False
        # ... and token-level generation (model_registry/loaders/completion.py).
        self.completion = None

    @property
    def tasks(self) -> list[str]:
        return list(self.runners)

    def run(self, task: str, inputs: list) -> list:
        settings = self.batch_settings
        return self._batcher(task).submit(inputs, settings.timeout_s)

    def run_nowait(self, task: str, inputs: list) -> Future:
        """Queue `inputs` and return the future of their outputs (Batcher.submit_nowait)."""
        return self._batcher(task).submit_nowait(inputs, self.batch_settings.timeout_s)

    def _batcher(self, task: str) -> Batcher:
        batcher = self._batchers.get(task)
        if batcher is None:
            with self._lock:
                batcher = self._batchers.get(task)
                if batcher is None:
                    settings = self.batch_settings
                    on_batch = settings.on_batch
                    runner = self.runners[task]
                    prepared = isinstance(runner, PreparedRunner)
                    batcher = self._batchers[task] = Batcher(
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
        return batcher

    def close(self) -> None:
        """Stop the batch workers once their queues are drained (on eviction)."""
        with self._lock:
            for batcher in self._batchers.values():
                batcher.close()
        if self.on_close:
            self.on_close()
