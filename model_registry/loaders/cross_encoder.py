"""Cross-encoders (sentence-transformers' CrossEncoder): one relevance score per (query, document) pair.

A cross-encoder reads the query and the document together, as one sequence
pair, and its classification head gives one logit. The score answered is the
logit through the model's own activation, the one CrossEncoder.predict applies:
the `activation_fn` its folder names (config_sentence_transformers.json; older
versions' config.json key), a sigmoid when it names none. The raw logit rides
along for `raw_scores`.

The pairs are tokenised on the request thread as CrossEncoder tokenises them
(longest_first truncation at its max_seq_length) and batched by their tokens
(model_registry/token_batching.py), so a request of 1,000 documents runs as
passes of similar lengths, shared with other requests. The forward pass is the
encoder head of encoder_heads.py: torch, or ONNX Runtime (INFER_BACKEND=onnx)
where the export matches torch on the calibration sentences.
"""

import importlib
import json
import os

import torch

from ..catalogue import ModelSpec
from ..served_model import ServedModel
from ..token_batching import PreparedRunner, collate, split_rows
from .common import DEFAULT_SETTINGS, LoadSettings, MissingWeights, import_lock, max_input_tokens
from .encoder_heads import load_encoder
from .sentence_transformer_inputs import TEXT_INPUTS, pad_values
from .shared_tokenizers import SerialTokenizer

# The tasks this loader's models serve (checked against the catalogue at import).
TASKS = frozenset({"rerank"})
PURPOSE = "rerank (a cross-encoder: one relevance score per query and document)"


class NotAReranker(MissingWeights):
    """The folder's model scores a pair with several labels, not one relevance score: like
    missing weights, a head that does not fit the task, which a build reports as such."""


def activation_path(path: str) -> str | None:
    """The activation CrossEncoder applies to this folder's logits, as a dotted path
    (None: its default, a sigmoid for one label)."""
    for name, key in (("config_sentence_transformers.json", "activation_fn"),
                      ("config.json", "sbert_ce_default_activation_function")):
        try:
            with open(os.path.join(path, name)) as file:
                value = json.load(file).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and value:
            return value
    return None


def activation_for(path: str):
    """The activation as a torch module. Like CrossEncoder without trust_remote_code,
    only torch's own classes are taken; anything else falls back to the sigmoid."""
    dotted = activation_path(path)
    if dotted and dotted.startswith("torch."):
        module, _, name = dotted.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)()
        except (ImportError, AttributeError, TypeError):
            pass
    return torch.nn.Sigmoid()


def max_seq_length(path: str, tokenizer, config) -> int:
    """CrossEncoder's max_seq_length: its folder's setting, within what the model takes."""
    longest = max_input_tokens(tokenizer, config)
    try:
        with open(os.path.join(path, "sentence_bert_config.json")) as file:
            saved = json.load(file).get("max_seq_length")
    except (OSError, ValueError, AttributeError):
        saved = None
    return min(saved, longest) if isinstance(saved, int) and saved > 0 else longest


def load_cross_encoder(spec: ModelSpec, path: str, device: str, half: bool,
                       settings: LoadSettings = DEFAULT_SETTINGS) -> ServedModel:
    with import_lock:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = SerialTokenizer(AutoTokenizer.from_pretrained(path))
    encoder = load_encoder(spec.key, path, AutoModelForSequenceClassification, PURPOSE, ("logits",), device, half,
                           settings)
    if encoder.config.num_labels != 1:
        raise NotAReranker(f"The model has {encoder.config.num_labels} output labels; a reranker scores each "
                           "(query, document) pair with one: upload a cross-encoder with num_labels=1.")
    runner = _pair_runner(tokenizer, encoder, max_seq_length(path, tokenizer, encoder.config), activation_for(path))
    served = ServedModel(spec.key, encoder.model, encoder.nbytes, device, {"rerank": runner})
    served.backend = encoder.backend
    return served


def _pair_runner(tokenizer, encoder, max_length: int, activation) -> PreparedRunner:
    probe = tokenizer("query", "document")
    names = [name for name in TEXT_INPUTS if name in probe and name in encoder.input_names]
    pads = pad_values(tokenizer, names)
    side = tokenizer.padding_side

    def prepare(pairs: list[dict]) -> list:
        encoded = tokenizer([pair["query"] for pair in pairs], [pair["document"] for pair in pairs],
                            padding=True, truncation="longest_first", max_length=max_length)
        return split_rows({name: encoded[name] for name in names}, side)

    def run(items: list) -> list[dict]:
        batch = {name: torch.from_numpy(array) for name, array in collate(items, pads, side).items()}
        logits = encoder(**batch).logits.float().reshape(-1).cpu()
        scores = activation(logits)
        return [{"score": float(score), "raw_score": float(logit), "tokens": len(item)}
                for score, logit, item in zip(scores.tolist(), logits.tolist(), items)]

    return PreparedRunner(prepare, run)
