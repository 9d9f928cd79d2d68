"""sentence-transformers models: text vectors."""

from ..catalogue import ModelSpec
from ..device import module_nbytes
from ..served_model import ServedModel
from .common import DEFAULT_SETTINGS, LoadSettings, import_lock
from .shared_tokenizers import token_counter


# The tasks this loader's models serve (checked against the catalogue at import).
TASKS = frozenset({"text-vectorisation"})


def load_sentence_transformer(spec: ModelSpec, path: str, device: str, half: bool,
                              settings: LoadSettings = DEFAULT_SETTINGS) -> ServedModel:
    with import_lock:
        from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device=device, local_files_only=True, trust_remote_code=False)
    if half:
        model.half()
    model.eval()

    def vectorise(texts: list[str]) -> list[list[float]]:
        # Inputs longer than the model's max_seq_length are truncated by the model.
        # batch_size = len(texts): the batcher already chose the batch.
        vectors = model.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype("float32").tolist()

    served = ServedModel(spec.key, model, module_nbytes(model), device, {"text-vectorisation": vectorise})
    if model.tokenizer is not None:  # None for a model whose first module reads no text
        served.count_tokens = token_counter(model.tokenizer, model.max_seq_length)
    served.truncatable_vectors = spec.matryoshka
    return served

