"""An image classifier trained by a training job (trainers/clip_probe.py):
a logistic-regression head (safetensors) over the frozen features of a catalogue
CLIP, served in-process for /image-classification.

The base CLIP is found again by its catalogue key on this host (MODEL_DIR, the
Hugging Face cache, ...), never by a path saved at training time.
"""

import json
import os

from core.errors import ModelUnavailable
from model_registry.catalogue import MODELS, public_names
from model_registry.device import module_nbytes
from model_registry.resolve import resolve_model_dir
from model_registry.served_model import ServedModel
from model_registry.trained.clip_head import head_probabilities, image_encoder, load_head
from tasks.common import score_subset

from .base import TrainedFormat, Version

TASK = "image-classification"


class ClipProbe(TrainedFormat):
    name = "clip-probe"

    def serve(self, version: Version) -> ServedModel:
        with open(os.path.join(version.files_dir, "trained.json")) as file:
            base = json.load(file)["base_model"]
        if base not in MODELS:
            raise ModelUnavailable(f"Version {version.id} probes {base!r}, which this service's catalogue "
                                   "no longer has.")
        path, _source = resolve_model_dir(MODELS[base], version.settings.model_dir, public_names(base))
        model, encode = image_encoder(path, version.device, version.half)
        coef, intercept, classes = load_head(version.files_dir)

        def classify(items: list[dict]) -> list[dict[str, float]]:
            probabilities = head_probabilities(encode([item["image"] for item in items]), coef, intercept)
            return [score_subset(dict(zip(classes, map(float, row))), item["labels"])
                    for row, item in zip(probabilities, items)]

        served = ServedModel(version.key, model, module_nbytes(model) + coef.nbytes, version.device, {TASK: classify})
        return served.declare(trained_labels=classes)
