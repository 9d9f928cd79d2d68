"""A Hugging Face model folder, served by the built-in loaders: no user code runs
at all (its chat template, which is code, is not used). Its files are still
hostile data, so its build checks them before anything is loaded, in a process of
their own (uploads/hf_checks.py): the model its config describes must fit its
safetensors weights and the memory limits, and its tokenizer's regex patterns
must be known ones."""

import json
import os

from model_registry.served_model import ServedModel

from .. import hf_checks
from ..serving import hf_loader, hf_model
from .base import BuildFailed, UploadFormat, Version


class HfFolder(UploadFormat):
    name = "huggingface"
    needs = "a Hugging Face model folder"

    def detect(self, files_dir: str, model_config: dict) -> bool:
        return ("model_type" in model_config or "architectures" in model_config
                or os.path.isfile(os.path.join(files_dir, "modules.json")))

    def build(self, version: Version, model_config: dict, say) -> ServedModel:
        if "custom" in version.tasks:
            raise BuildFailed("A Hugging Face folder serves built-in tasks only; custom needs model.bin or inference.py.")
        try:
            loader = hf_loader(version.tasks, version.files_dir, model_config)
        except ValueError as exc:
            raise BuildFailed(str(exc)) from None
        hf_checks.check_hf_folder(version, loader, say)
        return _loaded(version, loader)

    def serve(self, version: Version) -> ServedModel:
        with open(os.path.join(version.files_dir, "config.json")) as config_file:
            loader = hf_loader(version.tasks, version.files_dir, json.load(config_file))
        return _loaded(version, loader)


def _loaded(version: Version, loader: str) -> ServedModel:
    return hf_model(version.key, version.files_dir, version.tasks, loader, version.device, version.half,
                    version.load_settings)
