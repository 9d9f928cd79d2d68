"""A tabular model trained by a training job (trainers/tabular.py): a
scikit-learn pipeline in a skops file, answering POST /predict in-process.

skops, not pickle: the file is loaded only if every type in it is one the
trainer's pipelines use (TRUSTED_TYPES), so a tampered file cannot run code.
"""

import json
import os

from core.errors import ModelUnavailable
from model_registry.served_model import ServedModel
from model_registry.trained.tabular_pipeline import (
    MODEL_FILE,
    TRAINED_FILE,
    UntrustedModelFile,
    feature_matrix,
    load_pipeline,
    plain,
)

from .base import TrainedFormat, Version

TASK = "tabular"


class SklearnModel(TrainedFormat):
    name = "sklearn"

    def serve(self, version: Version) -> ServedModel:
        path = os.path.join(version.files_dir, MODEL_FILE)
        with open(os.path.join(version.files_dir, TRAINED_FILE)) as file:
            trained = json.load(file)
        try:
            pipeline = load_pipeline(path)
        except UntrustedModelFile as exc:
            raise ModelUnavailable(f"Version {version.id} cannot be served: {exc}") from None
        kinds = {column["name"]: column["kind"] for column in trained["columns"]}
        classify = trained["objective"] == "classification"
        classes = [str(label) for label in trained["classes"]] if classify else None

        def predict(items: list[dict]) -> list[dict]:
            features = feature_matrix(items, kinds)
            predictions = pipeline.predict(features)
            if not classify:
                return [{"prediction": plain(p), "probabilities": None} for p in predictions]
            rows = pipeline.predict_proba(features).tolist()
            return [{"prediction": plain(p), "probabilities": dict(zip(classes, row))}
                    for p, row in zip(predictions, rows)]

        served = ServedModel(version.key, pipeline, os.path.getsize(path), "cpu", {TASK: predict})
        return served.declare(input_columns=kinds)
