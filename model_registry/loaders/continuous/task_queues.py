"""What a decoder-only model's generation tasks submit to: its one running batch.

The loader makes a ContinuousGeneration for a model whose cache can be batched
this way (kv_batch.supports, probed with one token at load). It gives two task
runners, /v1's completions (CompletionRequests -> Completions) and Backprop's
/text-generation (items {"text", "params", "control"} -> texts), both feeding
the same scheduler, made on the model's first request with the service's
batch settings. ServedModel asks a runner that has `make_queue` for its queue
instead of building it a Batcher; called directly (a build's sample run, a
training job's evaluation), a runner runs the static generate() path as before.

Beam search (num_beams > 1 on /text-generation) is not a per-sequence step: a
request that asks for it goes to a Batcher on the static path, as before.
"""

import threading
from collections.abc import Callable
from concurrent.futures import Future

from ...batcher import Batcher
from ..completion import CompletionRequest
from ..generation import shape_outputs
from ..common import GenerationLimits
from .kv_batch import forward_kwargs, supports
from .scheduler import GenerationScheduler


class ContinuousGeneration:
    def __init__(self, engine, limits: GenerationLimits, tokenizer, context_length: int,
                 static_completions: Callable, static_text_generation: Callable):
        self.engine = engine
        self.limits = limits
        self.tokenizer = tokenizer
        self.context_length = context_length
        self._scheduler: GenerationScheduler | None = None
        self._lock = threading.Lock()
        self.completions = QueueRunner(static_completions, self._completions_queue)
        self.text_generation = QueueRunner(static_text_generation, self._text_generation_queue)

    def scheduler(self, name: str, on_step) -> GenerationScheduler:
        with self._lock:
            if self._scheduler is None:
                self._scheduler = GenerationScheduler(self.engine, name, self.limits, on_step=on_step)
            return self._scheduler

    def _completions_queue(self, model_key: str, on_batch, static: Callable[[], Batcher]) -> "_CompletionsQueue":
        return _CompletionsQueue(self.scheduler(model_key, _step_metric(on_batch)))

    def _text_generation_queue(self, model_key: str, on_batch,
                               static: Callable[[], Batcher]) -> "_TextGenerationQueue":
        return _TextGenerationQueue(self, self.scheduler(model_key, _step_metric(on_batch)), static)


def _step_metric(on_batch):
    """Decoding steps are reported as the model's passes, under the task "generation-step"."""
    return (lambda rows, seconds: on_batch("generation-step", rows, seconds)) if on_batch else None


class QueueRunner:
    """A task runner: called with items it runs them on the static path; ServedModel
    calls make_queue(model key, on_batch(task, size, seconds), static) for the queue
    requests go through (`static()`: a Batcher on the static path, made when first
    needed, for what cannot run continuously)."""

    def __init__(self, static: Callable[[list], list], make_queue: Callable):
        self.static = static
        self.make_queue = make_queue

    def __call__(self, items: list) -> list:
        return self.static(items)


class _CompletionsQueue:
    def __init__(self, scheduler: GenerationScheduler):
        self.scheduler = scheduler

    def submit(self, requests: list[CompletionRequest], timeout_s: float) -> list:
        return self.scheduler.submit(requests, timeout_s)

    def submit_nowait(self, requests: list[CompletionRequest], timeout_s: float) -> Future:
        return self.scheduler.submit_nowait(requests, timeout_s)

    def close(self) -> None:
        self.scheduler.close()

    def queued(self) -> int:
        return self.scheduler.queued()


class _TextGenerationQueue(_CompletionsQueue):
    """Backprop's items as CompletionRequests: lengths in new tokens, the prompt
    cut from the left to leave room for them, the answer the prompt followed by
    its continuation (a list per input for num_generations > 1)."""

    def __init__(self, generation: ContinuousGeneration, scheduler: GenerationScheduler,
                 static: Callable[[], Batcher]):
        super().__init__(scheduler)
        self.generation = generation
        self._make_static = static
        self._static: Batcher | None = None
        self._lock = threading.Lock()

    def submit(self, items: list[dict], timeout_s: float) -> list:
        if _needs_beams(items):
            return self._static_batcher().submit(items, timeout_s)
        return self.scheduler.submit(self._requests(items), timeout_s, convert=self._outputs(items))

    def submit_nowait(self, items: list[dict], timeout_s: float) -> Future:
        if _needs_beams(items):
            return self._static_batcher().submit_nowait(items, timeout_s)
        return self.scheduler.submit_nowait(self._requests(items), timeout_s, convert=self._outputs(items))

    def close(self) -> None:
        super().close()
        with self._lock:
            if self._static is not None:
                self._static.close()

    def queued(self) -> int:
        return super().queued() + (self._static.queued() if self._static is not None else 0)

    def _static_batcher(self) -> Batcher:
        with self._lock:
            if self._static is None:
                self._static = self._make_static()
            return self._static

    def _requests(self, items: list[dict]) -> list[CompletionRequest]:
        requests = []
        for index, item in enumerate(items):
            params = item["params"]
            room = max(1, self.generation.context_length - params["max_length"])
            ids = self.generation.tokenizer(item["text"], truncation=True, max_length=room)["input_ids"]
            requests.append(CompletionRequest(
                prompt_ids=list(ids), max_tokens=params["max_length"], temperature=params["temperature"],
                top_p=params["top_p"], top_k=params["top_k"], n=params["num_generations"],
                min_tokens=params["min_length"], repetition_penalty=params["repetition_penalty"],
                first_choice=index * params["num_generations"], control=item.get("control"),
            ))
        return requests

    @staticmethod
    def _outputs(items: list[dict]):
        def convert(completions) -> list:
            outputs = []
            for item, completion in zip(items, completions):
                control = item.get("control")
                if control is not None:  # what was generated, for the metrics (generation.record_generated)
                    control.generated[id(item)] = [(c.finish_reason, c.completion_tokens) for c in completion.choices]
                texts = [item["text"] + choice.text for choice in completion.choices]
                outputs.extend(shape_outputs(texts, item["params"]["num_generations"]))
            return outputs
        return convert


def _needs_beams(items: list[dict]) -> bool:
    return any(item["params"]["num_beams"] > 1 for item in items)


def continuous_generation(engine, limits: GenerationLimits | None, tokenizer, context_length: int,
                          static_completions: Callable,
                          static_text_generation: Callable) -> ContinuousGeneration | None:
    """Continuous batching for this model, if the settings ask for it and its cache
    allows it (one token through the model at load tells); None: the static path.
    Sets what the scheduler reads on the engine: its bytes of KV cache per token
    and sequence, and the forward() arguments it takes."""
    import torch

    if limits is None:
        return None
    first = engine.pad_id if tokenizer.bos_token_id is None else tokenizer.bos_token_id
    with torch.inference_mode():
        out = engine.model(input_ids=torch.tensor([[first]], device=engine.device), use_cache=True)
    cache = out.past_key_values
    if not supports(cache):
        return None
    engine.token_bytes = sum(layer.keys.numel() * layer.keys.element_size()
                             + layer.values.numel() * layer.values.element_size() for layer in cache.layers)
    engine.forward_extra = forward_kwargs(engine.model)
    return ContinuousGeneration(engine, limits, tokenizer, context_length, static_completions, static_text_generation)
