"""Multi-label emotion classifiers (GoEmotions): labels at or above the service's threshold
(settings.emotion_threshold, INFER_EMOTION_THRESHOLD), given at load time."""

import torch

from ..catalogue import ModelSpec
from ..served_model import ServedModel
from .common import DEFAULT_SETTINGS, LoadSettings, import_lock, max_input_tokens
from .encoder_heads import load_encoder


# The tasks this loader's models serve (checked against the catalogue at import).
TASKS = frozenset({"emotion"})


def load_emotion_classifier(spec: ModelSpec, path: str, device: str, half: bool,
                            settings: LoadSettings = DEFAULT_SETTINGS) -> ServedModel:
    with import_lock:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = load_encoder(spec.key, path, AutoModelForSequenceClassification, "emotion", ("logits",), device, half,
                         settings)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    max_tokens = max_input_tokens(tokenizer, model.config)

    def scores(texts: list[str]) -> list[dict[str, float]]:
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        probabilities = torch.sigmoid(model(**encoded).logits.float()).tolist()
        return [dict(zip(labels, row)) for row in probabilities]

    def emotion(items: list[dict]) -> list[str]:
        results = []
        for item, by_label in zip(items, scores([item["text"] for item in items])):
            ranked = sorted(by_label.items(), key=lambda pair: pair[1], reverse=True)
            chosen = [label for label, p in ranked if p >= settings.emotion_threshold]
            # Never an empty answer: with nothing above the threshold, the likeliest label.
            results.append(", ".join(chosen or [ranked[0][0]]))
        return results

    served = ServedModel(spec.key, model.model, model.nbytes, device, {"emotion": emotion})
    served.backend = model.backend
    return served
