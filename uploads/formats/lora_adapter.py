"""A LoRA adapter trained on a catalogue causal language model
(trainers/lora_generation.py), served merged into that base.

The version's files are the adapter alone (adapter_model.safetensors,
adapter_config.json) and trained.json naming the base by its catalogue key.
Serving resolves the base afresh on this host, loads it as the catalogue's
causal-lm loader does, and merges the adapter into its weights before it is
placed, so /text-generation and the /v1 completion routes run it at the base's
speed.

The chat template used by /v1/chat/completions is the catalogue base's own,
read from the base's files on this host; nothing of the user's dataset is a
template, so it is run (unlike an uploaded folder's, see uploads/serving.py).
"""

import dataclasses
import json
import os

from core.errors import ModelUnavailable
from model_registry.catalogue import CAUSAL_LM, MODELS
from model_registry.loaders import completion
from model_registry.loaders.causal_lm import load_causal_lm
from model_registry.loaders.common import import_lock
from model_registry.resolve import resolve_model_dir
from model_registry.served_model import ServedModel

from .base import TrainedFormat, Version


class LoraAdapter(TrainedFormat):
    name = "lora-adapter"

    def serve(self, version: Version) -> ServedModel:
        with open(os.path.join(version.files_dir, "trained.json")) as file:
            trained = json.load(file)
        spec = _base_spec(trained)
        base_dir, _ = resolve_model_dir(spec, version.settings.model_dir)
        served = load_causal_lm(
            dataclasses.replace(spec, key=version.key), base_dir, version.device, version.half,
            version.load_settings, adapt=lambda model: merged(model, version.files_dir),
        )
        # The tasks the version declares, and with text generation its /v1 runners.
        routes = set(completion.ROUTE_RUNNERS) if completion.SERVES in version.tasks else set()
        runners = set(version.tasks) | routes
        served.runners = {task: run for task, run in served.runners.items() if task in runners}
        return served


def _base_spec(trained: dict):
    key = trained.get("base_model")
    spec = MODELS.get(key)
    if spec is None or spec.loader != CAUSAL_LM:
        raise ModelUnavailable(f"This adapter was trained on {key!r}, which the catalogue no longer lists as a "
                               "causal language model; train it again on one it lists.")
    if spec.filename != trained.get("base_model_file"):
        # The adapter's weights fit the file it was trained on, not another export.
        raise ModelUnavailable(f"This adapter was trained on {key}'s file {trained.get('base_model_file')}, but the "
                               f"catalogue now serves {spec.filename}; train it again.")
    return spec


def merged(model, adapter_dir: str):
    """The base model with the adapter's update added into its weights (PEFT's
    merge_and_unload): a plain transformers model again, no adapter layers."""
    with import_lock:  # first imports are not thread-safe (see loaders/common.py)
        from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
