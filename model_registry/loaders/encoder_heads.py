"""An encoder with a task head (sequence classification, question answering), on torch or ONNX.

The emotion, NLI and extractive QA loaders call an Encoder as they would call the
transformers model: ``encoder(**encoded).logits``. With INFER_BACKEND=onnx the
head model is exported once (model_registry/onnx_export.py) and checked against
torch on the calibration sentences; a model that does not export, or whose ONNX
outputs differ from torch's, is served with torch, and the log says why.
"""

import inspect
import logging
import os
from types import SimpleNamespace

import numpy as np

from ..calibration import SENTENCES
from ..device import module_nbytes
from ..onnx_export import cached_build, export_module, failure_reason, files_digest, library_versions
from .common import LoadSettings, from_pretrained, import_lock, inference, place

log = logging.getLogger(__name__)

GRAPH = "model.onnx"
CHECK_TEXTS = 16
# Largest |ONNX - torch| accepted, relative to the largest torch output (float rounding is ~1e-6).
MAX_RELATIVE_DIFFERENCE = 1e-3
# Outputs with one value per token: compared only where the attention mask is 1.
PER_TOKEN = ("start_logits", "end_logits")


class Encoder:
    """The head model as the loaders call it; `model` is what the ServedModel holds."""

    def __init__(self, model, config, input_names: list[str], nbytes: int, backend: str, call):
        self.model = model
        self.config = config
        self.input_names = input_names  # what the model reads of a tokenizer's output
        self.nbytes = nbytes
        self.backend = backend
        self._call = call

    def __call__(self, **inputs) -> SimpleNamespace:
        return SimpleNamespace(**self._call(inputs))


def load_encoder(key: str, path: str, model_class, purpose: str, outputs: tuple[str, ...],
                 device: str, half: bool, settings: LoadSettings) -> Encoder:
    settings = settings or LoadSettings()
    if settings.backend_for(key, device) == "onnx":
        encoder = _onnx_encoder(key, path, model_class, purpose, outputs, settings)
        if encoder is not None:
            return encoder
    model = place(from_pretrained(model_class, path, purpose), device, half)

    def call(inputs: dict) -> dict:
        with inference():
            result = model(**{name: value.to(device) for name, value in inputs.items()})
        return {name: getattr(result, name) for name in outputs}

    accepted = list(inspect.signature(model.forward).parameters)
    return Encoder(model, model.config, accepted, module_nbytes(model), "torch", call)


def _onnx_encoder(key, path, model_class, purpose, outputs, settings) -> Encoder | None:
    import torch

    from ..onnx_backend import OnnxForward, onnx_file_bytes

    with import_lock:
        from transformers import AutoConfig

    build_key = {"model": key, "files": files_digest(path), "kind": model_class.__name__,
                 "outputs": list(outputs), **library_versions()}
    folder, manifest = cached_build(settings.export_root(path), f"{key}-{model_class.__name__}", build_key,
                                    lambda out: _export(path, out, model_class, purpose, outputs, settings.threads))
    if not manifest["servable"]:
        log.warning("model %s: not served on ONNX (%s); serving it with torch", key, manifest["reason"])
        return None
    forward = OnnxForward(os.path.join(folder, GRAPH), settings.threads)

    def call(inputs: dict) -> dict:
        arrays = forward({name: value.cpu().numpy() for name, value in inputs.items()})
        return {name: torch.from_numpy(arrays[name]) for name in outputs}

    config = AutoConfig.from_pretrained(path)
    return Encoder(forward, config, forward.input_names, onnx_file_bytes(os.path.join(folder, GRAPH)), "onnx", call)


def _export(path: str, out: str, model_class, purpose: str, outputs: tuple[str, ...], threads: int) -> dict:
    import torch

    from ..onnx_backend import OnnxForward

    with import_lock:
        from transformers import AutoTokenizer

    # Refuses a checkpoint without the head's weights (MissingWeights), as on torch.
    model = from_pretrained(model_class, path, purpose).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    accepted = set(inspect.signature(model.forward).parameters)
    check = tokenizer(list(SENTENCES[:CHECK_TEXTS]), padding=True, truncation=True, max_length=128, return_tensors="pt")
    names = [name for name in check if name in accepted]

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            result = self.model(**dict(zip(names, tensors)))
            return tuple(getattr(result, name) for name in outputs)

    graph = os.path.join(out, GRAPH)
    try:
        export_module(Head(), {name: check[name][:2] for name in names}, list(outputs), graph)
    except Exception as exc:  # an architecture torch.export cannot trace: torch serves it
        log.warning("ONNX export of %s failed", path, exc_info=True)
        return {"servable": False, "reason": f"the ONNX export failed: {failure_reason(exc)}"}
    with torch.inference_mode():
        expected = model(**{name: check[name] for name in names})
    got = OnnxForward(graph, threads)({name: check[name].numpy() for name in names})
    mask = check["attention_mask"].numpy().astype(bool)
    worst = 0.0
    for name in outputs:
        want = getattr(expected, name).float().numpy()
        difference = np.abs(got[name] - want)
        if name in PER_TOKEN:
            difference = difference[mask]
        worst = max(worst, float(difference.max()) / (1.0 + float(np.abs(want).max())))
    if worst > MAX_RELATIVE_DIFFERENCE:
        return {"servable": False, "reason": f"its ONNX outputs differ from torch's by {worst:.2e} (relative) "
                                             f"on the calibration sentences, above {MAX_RELATIVE_DIFFERENCE}"}
    return {"servable": True, "inputs": names, "max_relative_difference": worst}
