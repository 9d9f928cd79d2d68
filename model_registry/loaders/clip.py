"""CLIP through transformers' CLIP classes: text vectors, image vectors and zero-shot
image labels, all in one embedding space, and Backprop's joined image-text vectors.

open_clip needs torchvision, whose PyPI build does not load beside the CPU torch
used here, so it is not a loader of this service.
"""

import torch

from ..catalogue import ModelSpec
from ..device import module_nbytes
from ..served_model import ServedModel
from .common import (
    DEFAULT_SETTINGS,
    LoadSettings,
    from_pretrained,
    import_lock,
    inference,
    max_input_tokens,
    place,
)
from .shared_tokenizers import token_counter

PURPOSE = "CLIP text and image vectors"


def image_processor(path: str):
    from transformers import AutoImageProcessor

    try:
        # The PIL backend: the default one needs torchvision, which is not installed.
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil.from_pretrained(path)
    except ImportError:
        return AutoImageProcessor.from_pretrained(path)


def features_of(output) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projection.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


# The tasks this loader's models serve (checked against the catalogue at import).
TASKS = frozenset({"text-vectorisation", "image-vectorisation", "image-classification", "image-text-vectorisation"})


def load_clip(spec: ModelSpec, path: str, device: str, half: bool,
              settings: LoadSettings = DEFAULT_SETTINGS) -> ServedModel:
    with import_lock:
        from transformers import AutoTokenizer, CLIPModel

    tokenizer = AutoTokenizer.from_pretrained(path)
    images = image_processor(path)
    model = place(from_pretrained(CLIPModel, path, PURPOSE), device, half)
    dtype = next(model.parameters()).dtype
    max_tokens = max_input_tokens(tokenizer, model.config.text_config, default=77)

    def text_features(texts: list[str]) -> torch.Tensor:
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt").to(device)
        with inference():
            return features_of(model.get_text_features(**encoded)).float()

    def image_features(pictures: list) -> torch.Tensor:
        pixels = images(images=pictures, return_tensors="pt")["pixel_values"].to(device, dtype)
        with inference():
            return features_of(model.get_image_features(pixel_values=pixels)).float()

    def vectorise_texts(texts: list[str]) -> list[list[float]]:
        return text_features(texts).cpu().tolist()

    def vectorise_images(pictures: list) -> list[list[float]]:
        return image_features(pictures).cpu().tolist()

    def classify_images(items: list[dict]) -> list[dict[str, float]]:
        pictures = image_features([item["image"] for item in items])
        pictures = pictures / pictures.norm(dim=-1, keepdim=True)
        labels = sorted({label for item in items for label in item["labels"]})
        texts = text_features(labels)
        texts = texts / texts.norm(dim=-1, keepdim=True)
        row_of = {label: row for row, label in enumerate(labels)}
        scale = model.logit_scale.exp().float()
        results = []
        for picture, item in zip(pictures, items):
            rows = torch.tensor([row_of[label] for label in item["labels"]], device=texts.device)
            # Softmax over the caller's labels: the probabilities sum to 1, as Backprop's did.
            probabilities = torch.softmax(scale * texts[rows] @ picture, dim=-1).tolist()
            results.append(dict(zip(item["labels"], probabilities)))
        return results

    def vectorise_image_texts(items: list[dict]) -> list[list[float]]:
        # Backprop's CLIP (0.1.x): the raw image and text vectors joined, image
        # first, and the joined vector scaled to length 1.
        joined = torch.cat([image_features([item["image"] for item in items]),
                            text_features([item["text"] for item in items])], dim=1)
        return (joined / joined.norm(dim=-1, keepdim=True)).cpu().tolist()

    runners = {
        "text-vectorisation": vectorise_texts,
        "image-vectorisation": vectorise_images,
        "image-classification": classify_images,
        "image-text-vectorisation": vectorise_image_texts,
    }
    served = ServedModel(spec.key, model, module_nbytes(model), device, runners)
    # Its token counts are the text side's: what text_features reads.
    served.declare(count_tokens=token_counter(tokenizer, max_tokens), shorter_vectors=spec.matryoshka)
    return served
