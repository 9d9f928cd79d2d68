"""What the loaders share: safe first imports, checked weights, device placement,
input length limits."""

import threading
from dataclasses import dataclass

import torch

from core.settings import Settings

# Model libraries are imported on first load, not at start (the CLI and health
# endpoints do not need them); their first import is not thread-safe, and two
# models may load at once in two threads.
import_lock = threading.Lock()


@dataclass(frozen=True)
class GenerationLimits:
    """Continuous batching of a decoder-only model's generations (loaders/continuous)."""

    max_running: int = 16  # sequences decoding together (a request's n choices are n)
    kv_cache_bytes: int = 1 << 30  # their KV cache, reckoned for the worst case
    prefill_chunk_tokens: int = 512  # prompt tokens fed per pass while others decode
    max_queue: int = 256  # requests waiting, shared between accounts (as BATCH_MAX_QUEUE)


@dataclass(frozen=True)
class LoadSettings:
    """The service's settings that shape what a loaded model answers, given to every
    loader when it loads a model (not carried inside every batch item)."""

    # The emotion classifier answers the labels at least this likely (INFER_EMOTION_THRESHOLD).
    emotion_threshold: float = 0.5
    # The backend of encoder models, "auto", "torch" or "onnx" (INFER_BACKEND), and
    # per catalogue key ((key, backend) pairs, INFER_BACKEND_OVERRIDES). A loader
    # called without the service's settings runs on torch (no folder for exports).
    backend: str = "torch"
    backend_overrides: tuple[tuple[str, str], ...] = ()
    # Where ONNX exports are kept (model_registry/onnx_export.py cache_root).
    onnx_cache_dir: str = ""
    model_dir: str = ""
    data_dir: str = ""
    # Intra-op threads of an ONNX Runtime session (INFER_TORCH_THREADS).
    threads: int = 1
    # int8 quantisation of ONNX vectorisers: "" or a preset (onnx_quantise.PRESETS),
    # refused below this worst cosine to fp32 on the calibration sentences.
    int8: str = ""
    int8_min_cosine: float = 0.99
    # Continuous batching of generations; None: the static generate() path (INFER_GEN_CONTINUOUS_BATCHING=false).
    generation: GenerationLimits | None = GenerationLimits()

    @classmethod
    def from_config(cls, config: Settings) -> "LoadSettings":
        from ..onnx_backend import BACKENDS, parse_overrides
        from ..onnx_quantise import PRESETS

        backend = config.backend
        if backend not in BACKENDS:
            raise ValueError(f"INFER_BACKEND: {backend!r} is not one of {', '.join(BACKENDS)}")
        int8 = config.onnx_int8
        if int8 and int8 not in PRESETS:
            raise ValueError(f"INFER_ONNX_INT8: {int8!r} is not one of {', '.join(PRESETS)} (or empty: off)")
        return cls(
            emotion_threshold=config.emotion_threshold,
            backend=backend,
            backend_overrides=parse_overrides(config.backend_overrides),
            onnx_cache_dir=config.onnx_cache_dir,
            model_dir=config.model_dir,
            data_dir=config.data_dir,
            threads=config.torch_threads,
            int8=int8,
            int8_min_cosine=config.onnx_int8_min_cosine,
            generation=GenerationLimits(
                max_running=config.gen_max_running,
                kv_cache_bytes=config.gen_kv_cache_mb * 2**20,
                prefill_chunk_tokens=config.gen_prefill_chunk_tokens,
                max_queue=config.batch_max_queue,
            ) if config.gen_continuous_batching else None,
        )

    def backend_for(self, key: str, device: str, auto: str = "torch") -> str:
        """"torch" or "onnx" for this model; `auto` is what INFER_BACKEND=auto means for it on a CPU."""
        from ..onnx_backend import chosen_backend

        return chosen_backend(key, self.backend, self.backend_overrides, device, auto)

    def export_root(self, model_path: str) -> str:
        from ..onnx_export import cache_root

        return cache_root(model_path, self.onnx_cache_dir, self.model_dir, self.data_dir)


DEFAULT_SETTINGS = LoadSettings()

# How many parameter names a MissingWeights message lists before "and N more".
SHOWN_KEYS = 6


class MissingWeights(ValueError):
    """The checkpoint does not cover every parameter of the model built from it.

    transformers fills such parameters (typically a task head: a base BERT read as
    a classifier, a T5 read as extractive QA) with random numbers and only warns;
    served, that model answers with noise, so the load is refused instead.
    """


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown if len(keys) <= SHOWN_KEYS else f"{shown} and {len(keys) - SHOWN_KEYS} more"


def check_weights(model, info: dict, purpose: str) -> None:
    """Raise MissingWeights if `info` (from output_loading_info=True) shows parameters
    of `model` that the checkpoint did not fill."""
    # Only parameters count: buffers are recomputed or default sensibly (position_ids,
    # final_logits_bias). transformers has already taken out of missing_keys what it
    # may leave missing: weights tied to others (lm_head to the embeddings) and the
    # model's _keys_to_ignore_on_load_missing.
    parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    missing = sorted(key for key in info["missing_keys"] if key in parameters)
    # (name, shape in the checkpoint, shape the model needs)
    mismatched = sorted(info["mismatched_keys"], key=lambda entry: entry[0])
    problems = []
    if missing:
        problems.append(f"has no weights for {_names(missing)}")
    if mismatched:
        shapes = [f"{name} ({list(got)}, the model needs {list(wanted)})" for name, got, wanted in mismatched]
        problems.append(f"has weights of the wrong shape for {_names(shapes)}")
    if problems:
        raise MissingWeights(
            f"The checkpoint {' and '.join(problems)} ({type(model).__name__} needs them for {purpose}): "
            f"the model would answer with random numbers. Upload a checkpoint trained for {purpose}."
        )


def from_pretrained(model_class, path: str, purpose: str, **kwargs):
    """`model_class.from_pretrained(path)`, refusing a checkpoint that leaves any
    parameter to random initialisation (see MissingWeights)."""
    # ignore_mismatched_sizes: a wrong shape is then reported in loading info and
    # refused by check_weights with a message naming it, instead of transformers'
    # "look at the above report", which a build's message cannot show.
    model, info = model_class.from_pretrained(path, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    check_weights(model, info, purpose)
    return model


def place(model, device: str, half: bool):
    """Move a model to its device, in half precision where chosen, for inference."""
    model.to(device)
    if half:
        model.half()
    model.eval()
    return model


def max_input_tokens(tokenizer, config, default: int = 512) -> int:
    """The longest input the model takes: tokenizers of small models often claim 1e30."""
    limits = [default]
    if getattr(tokenizer, "model_max_length", None) and tokenizer.model_max_length < 1e9:
        limits = [tokenizer.model_max_length]
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        # Some architectures (RoBERTa) reserve position ids for padding.
        limits.append(positions - 2 if getattr(config, "model_type", "") in ("roberta", "xlm-roberta") else positions)
    return min(limits)


def inference():
    return torch.inference_mode()
