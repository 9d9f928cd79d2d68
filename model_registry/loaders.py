"""Loader functions: a folder of model files in, a ServedModel out.

One function per loader name used in the catalogue. Loaders never trust remote
code; a model that needs custom code is a user model and runs in its own worker.
"""

import threading

from .catalogue import SENTENCE_TRANSFORMER, ModelSpec
from .device import module_nbytes
from .served_model import ServedModel


# Model libraries are imported on first load, not at start (the CLI and the
# health endpoints do not need them); two models loading at once in two threads
# must not both run a library's first import, which is not thread-safe.
_import_lock = threading.Lock()


def load_sentence_transformer(spec: ModelSpec, path: str, device: str, half: bool) -> ServedModel:
    with _import_lock:
        from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device=device, local_files_only=True, trust_remote_code=False)
    if half:
        model.half()
    model.eval()

    def vectorise(texts: list[str]) -> list[list[float]]:
        # batch_size = len(texts): the caller (or the batcher) already chose the batch.
        vectors = model.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype("float32").tolist()

    return ServedModel(spec.key, model, module_nbytes(model), device, {"text-vectorisation": vectorise})


LOADERS = {
    SENTENCE_TRANSFORMER: load_sentence_transformer,
}


def loader_for(spec: ModelSpec):
    try:
        return LOADERS[spec.loader]
    except KeyError:
        raise LookupError(f"no loader {spec.loader!r} for model {spec.key}") from None

