"""Zero-shot text classification by NLI entailment (as transformers' zero-shot pipeline).

Each (text, label) pair becomes a premise/hypothesis pair; a label's probability
is the softmax of entailment against contradiction for that pair alone, so the
labels are scored independently (Backprop's probabilities need not sum to 1).
All pairs of all requests in a batch go through one forward pass.
"""

import torch

from ..catalogue import ModelSpec
from ..served_model import ServedModel
from .common import DEFAULT_SETTINGS, LoadSettings, import_lock, max_input_tokens
from .encoder_heads import load_encoder

HYPOTHESIS_TEMPLATE = "This example is {}."
# Pairs per forward pass: a batch of 32 texts with 32 labels each is 1024 pairs,
# too many activations to hold at once for a large NLI model.
PAIRS_PER_PASS = 64
PURPOSE = "text-classification (an NLI model: entailment, neutral, contradiction)"


def entailment_ids(config) -> tuple[int, int]:
    """(contradiction, entailment) logit indices, by the zero-shot pipeline's rule."""
    entailment = next((i for label, i in config.label2id.items() if label.lower().startswith("entail")), -1)
    contradiction = -1 if entailment == 0 else 0
    return contradiction, entailment


# The tasks this loader's models serve (checked against the catalogue at import).
TASKS = frozenset({"text-classification"})


def load_zero_shot_nli(spec: ModelSpec, path: str, device: str, half: bool,
                       settings: LoadSettings = DEFAULT_SETTINGS) -> ServedModel:
    with import_lock:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = load_encoder(spec.key, path, AutoModelForSequenceClassification, PURPOSE, ("logits",), device, half,
                         settings)
    contradiction, entailment = entailment_ids(model.config)
    max_tokens = max_input_tokens(tokenizer, model.config)

    def classify(items: list[dict]) -> list[dict[str, float]]:
        premises = [item["text"] for item in items for _ in item["labels"]]
        hypotheses = [HYPOTHESIS_TEMPLATE.format(label) for item in items for label in item["labels"]]
        scores = []
        for start in range(0, len(premises), PAIRS_PER_PASS):
            # Over-long texts are cut to fit the model, keeping the whole hypothesis.
            encoded = tokenizer(
                premises[start : start + PAIRS_PER_PASS], hypotheses[start : start + PAIRS_PER_PASS],
                padding=True, truncation="only_first", max_length=max_tokens, return_tensors="pt",
            )
            logits = model(**encoded).logits.float()
            scores += torch.softmax(logits[:, [contradiction, entailment]], dim=-1)[:, 1].tolist()
        results, offset = [], 0
        for item in items:
            labels = item["labels"]
            results.append(dict(zip(labels, scores[offset : offset + len(labels)])))
            offset += len(labels)
        return results

    served = ServedModel(spec.key, model.model, model.nbytes, device, {"text-classification": classify})
    served.backend = model.backend
    return served
