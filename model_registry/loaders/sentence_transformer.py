"""sentence-transformers models: text vectors, on torch or (INFER_BACKEND=onnx) ONNX Runtime.

On torch, a plain text model (a Transformer module first, no default prompt)
tokenises each request on its request thread with sentence-transformers' own
preprocess and runs its passes on the token ids (model_registry/token_batching.py);
the vectors are those of model.encode. Any other model is served through encode.
"""

import threading

from ..catalogue import ModelSpec
from ..device import module_nbytes
from ..served_model import ServedModel
from ..token_batching import PreparedRunner, collate, split_rows
from .common import DEFAULT_SETTINGS, LoadSettings, import_lock, inference
from .sentence_transformer_inputs import pad_values, plain_text_inputs
from .shared_tokenizers import token_counter

# The tasks this loader's models serve (checked against the catalogue at import): each
# runs a text to its vector; text-similarity's route compares the vectors (tasks/text_similarity.py).
TASKS = frozenset({"text-vectorisation", "text-similarity"})


def load_sentence_transformer(spec: ModelSpec, path: str, device: str, half: bool,
                              settings: LoadSettings = DEFAULT_SETTINGS) -> ServedModel:
    settings = settings or DEFAULT_SETTINGS
    # INFER_BACKEND=auto: the catalogue's vectorisers on ONNX (measured 1.4-2x torch's
    # throughput, vectors checked at export); users' models stay on torch, as their
    # exports would take disk outside their storage quota.
    if settings.backend_for(spec.key, device, auto="torch" if spec.uploaded else "onnx") == "onnx":
        from .sentence_transformer_onnx import load_onnx_vectoriser

        served = load_onnx_vectoriser(spec, path, settings)
        if served is not None:  # else it logged why, and torch serves it
            return served
    with import_lock:
        from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device=device, local_files_only=True, trust_remote_code=False)
    if half:
        model.half()
    model.eval()
    names = plain_text_inputs(model)
    if isinstance(names, str):
        runner = _encode_runner(model)
    else:
        runner = _token_runner(model, names, device)
    served = ServedModel(spec.key, model, module_nbytes(model), device, dict.fromkeys(TASKS, runner))
    if model.tokenizer is not None:  # None for a model whose first module reads no text
        served.declare(count_tokens=token_counter(model.tokenizer, model.max_seq_length))
    served.declare(shorter_vectors=spec.matryoshka)
    return served


def _encode_runner(model):
    def vectorise(texts: list[str]) -> list[list[float]]:
        # Inputs longer than the model's max_seq_length are truncated by the model.
        # batch_size = len(texts): the batcher already chose the batch.
        vectors = model.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype("float32").tolist()

    return vectorise


def _token_runner(model, names: list[str], device: str) -> PreparedRunner:
    import torch

    tokenizer = model.tokenizer
    side = tokenizer.padding_side
    pads = pad_values(tokenizer, names)
    # A fast tokenizer changes its settings in place on every call: one request thread at a time.
    lock = threading.Lock()

    def prepare(texts: list[str]) -> list:
        # The model's own preprocess (its truncation, lower-casing), one padded
        # batch per request, cut back into unpadded rows.
        with lock:
            features = model.preprocess(list(texts))
        return split_rows({name: features[name].tolist() for name in names}, side)

    def run(items: list) -> list[list[float]]:
        batch = {name: torch.from_numpy(array).to(device) for name, array in collate(items, pads, side).items()}
        with inference():
            vectors = model({**batch, "modality": "text"})["sentence_embedding"]
        return vectors.float().cpu().numpy().tolist()

    return PreparedRunner(prepare, run)
