"""sentence-transformers vectorisers on ONNX Runtime (INFER_BACKEND=onnx).

The whole module stack (transformer, pooling, normalisation, any dense layer) is
exported as one graph from the model sentence-transformers builds from the
folder, so the pooling and normalisation are the folder's own, not re-implemented.
The tokenizer is saved with the export as sentence-transformers configured it
(its max_seq_length, lower-casing), so a cached export loads without torch weights.

At export the served path (that tokenizer, then the graph) is compared with
model.encode on the calibration sentences: below FP32_MIN_COSINE the model is not
served on ONNX. An export that fails is recorded too, so later loads go straight to
torch. With INFER_ONNX_INT8 a quantised copy is built and measured against the fp32
export; below INFER_ONNX_INT8_MIN_COSINE it is refused and the fp32 export serves.
"""

import logging
import os
import threading

import numpy as np

from ..calibration import SENTENCES
from ..catalogue import ModelSpec
from ..onnx_backend import OnnxForward, onnx_file_bytes
from ..onnx_export import cached_build, export_module, failure_reason, files_digest, library_versions
from ..onnx_quantise import quantise, worst_cosine
from ..served_model import ServedModel
from ..token_batching import PreparedRunner, Tokens, collate
from .common import LoadSettings, import_lock
from .sentence_transformer_inputs import pad_values, plain_text_inputs
from .shared_tokenizers import token_counter

log = logging.getLogger(__name__)

# The ONNX vectors must be torch's, up to float rounding.
FP32_MIN_COSINE = 0.9999
GRAPH = "model.onnx"
INT8_GRAPH = "model.int8.onnx"
TOKENIZER = "tokenizer"
CHECK_BATCH = 16


def load_onnx_vectoriser(spec: ModelSpec, path: str, settings: LoadSettings) -> ServedModel | None:
    """The model served on ONNX Runtime, or None (logged) when it cannot be."""
    root = settings.export_root(path)
    key = {"model": spec.key, "files": files_digest(path), "kind": "sentence-vectors", **library_versions()}
    folder, manifest = cached_build(root, f"{spec.key}-vectors", key, lambda out: _export(path, out, settings.threads))
    if not manifest["servable"]:
        log.warning("model %s: not served on ONNX (%s); serving it with torch", spec.key, manifest["reason"])
        return None
    graph, backend = os.path.join(folder, GRAPH), "onnx"
    if settings.int8:
        preset = settings.int8
        int8_folder, int8_manifest = cached_build(
            root, f"{spec.key}-vectors-int8-{preset}", {**key, "int8": preset},
            lambda out: _quantised(folder, manifest, out, preset, settings.threads))
        cosine = int8_manifest["worst_cosine"]
        if cosine >= settings.int8_min_cosine:
            graph, backend = os.path.join(int8_folder, INT8_GRAPH), f"onnx-int8:{preset}"
            log.info("model %s: serving int8 (%s), worst cosine %.4f to fp32 on the calibration sentences",
                     spec.key, preset, cosine)
        else:
            log.error("model %s: int8 (%s) refused: its worst cosine to the fp32 vectors on the calibration "
                      "sentences is %.4f, below INFER_ONNX_INT8_MIN_COSINE=%g; serving the fp32 ONNX export",
                      spec.key, preset, cosine, settings.int8_min_cosine)
    vectorise = _Vectoriser(folder, manifest, graph, settings.threads)
    # The tasks of sentence_transformer.TASKS, each a text to its vector, through one runner.
    runner = PreparedRunner(vectorise.prepare, vectorise.run)
    served = ServedModel(spec.key, vectorise.forward, onnx_file_bytes(vectorise.graph), "cpu",
                         dict.fromkeys(("text-vectorisation", "text-similarity"), runner))
    served.backend = backend
    served.declare(count_tokens=token_counter(vectorise.tokenizer, vectorise.tokenizer.model_max_length),
                   shorter_vectors=spec.matryoshka)
    return served


class _Vectoriser:
    """An export served: the saved tokenizer (on request threads) and the graph."""

    def __init__(self, folder: str, manifest: dict, graph: str, threads: int):
        with import_lock:
            from transformers import AutoTokenizer

        self.graph = graph
        self.tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, TOKENIZER))
        self.names = manifest["inputs"]
        self.pads = pad_values(self.tokenizer, self.names)
        self.forward = OnnxForward(graph, threads)
        # A fast tokenizer changes its settings in place on every call: one request thread at a time.
        self._lock = threading.Lock()

    def prepare(self, texts: list[str]) -> list[Tokens]:
        # As sentence-transformers tokenises (truncation="longest_first" at the
        # tokenizer's model_max_length, its max_seq_length), without padding.
        with self._lock:
            encoded = self.tokenizer(list(texts), truncation="longest_first", padding=False)
        return [Tokens({name: encoded[name][row] for name in self.names}) for row in range(len(texts))]

    def run(self, items: list[Tokens]) -> list[list[float]]:
        vectors = self.forward(collate(items, self.pads, self.tokenizer.padding_side))["sentence_embedding"]
        return vectors.astype(np.float32).tolist()

    def vectors(self, texts) -> np.ndarray:
        texts = list(texts)
        rows = [self.run(self.prepare(texts[i: i + CHECK_BATCH])) for i in range(0, len(texts), CHECK_BATCH)]
        return np.asarray([row for chunk in rows for row in chunk], dtype=np.float32)


def _export(path: str, out: str, threads: int) -> dict:
    """Export the model at `path` into `out`; the manifest says whether it may serve."""
    import torch

    with import_lock:
        from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu", local_files_only=True, trust_remote_code=False).eval()
    names = plain_text_inputs(model)
    if isinstance(names, str):
        return {"servable": False, "reason": names}
    sample = model.preprocess(["a short input", "a somewhat longer input, to vary the lengths"])

    class Vectors(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model({**dict(zip(names, tensors)), "modality": "text"})["sentence_embedding"]

    try:
        export_module(Vectors(), {name: sample[name] for name in names}, ["sentence_embedding"],
                      os.path.join(out, GRAPH))
    except Exception as exc:  # an architecture torch.export cannot trace: torch serves it
        log.warning("ONNX export of %s failed", path, exc_info=True)
        return {"servable": False, "reason": f"the ONNX export failed: {failure_reason(exc)}"}
    model.tokenizer.save_pretrained(os.path.join(out, TOKENIZER))
    manifest = {"servable": True, "inputs": names}
    served = _Vectoriser(out, manifest, os.path.join(out, GRAPH), threads)
    expected = model.encode(list(SENTENCES), batch_size=CHECK_BATCH, convert_to_numpy=True, show_progress_bar=False)
    cosine = worst_cosine(served.vectors(SENTENCES), expected)
    manifest["worst_cosine_to_torch"] = cosine
    if cosine < FP32_MIN_COSINE:
        return {"servable": False, "reason": f"its ONNX vectors differ from torch's: worst cosine {cosine:.6f} "
                                             f"on the calibration sentences, below {FP32_MIN_COSINE}"}
    return manifest


def _quantised(folder: str, manifest: dict, out: str, preset: str, threads: int) -> dict:
    """Quantise the fp32 export into `out` and measure it against fp32 on the calibration sentences."""
    fp32 = _Vectoriser(folder, manifest, os.path.join(folder, GRAPH), threads)
    graph = os.path.join(out, INT8_GRAPH)
    count = quantise(fp32.graph, graph, preset)
    int8 = _Vectoriser(folder, manifest, graph, threads)
    cosine = worst_cosine(int8.vectors(SENTENCES), fp32.vectors(SENTENCES))
    return {"preset": preset, "quantised_matmuls": count, "worst_cosine": cosine}
