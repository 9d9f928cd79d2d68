"""A SetFit text classifier made by a training job: a sentence-transformers body
and a logistic-regression head over its sentence vectors.

SetFit's own save_pretrained writes the head as a joblib pickle
(model_head.pkl); a version's files never hold a pickle, so the trainer saves
the head's fitted numbers instead (coef_ and intercept_ as safetensors, the
classes as JSON), and serving sets them on a fresh LogisticRegression, whose
predict_proba then answers exactly as the trained head did.
"""

from model_registry.served_model import ServedModel
from model_registry.trained.setfit_head import load_head

from .base import TrainedFormat, Version


class SetFitModelFormat(TrainedFormat):
    name = "setfit"

    def serve(self, version: Version) -> ServedModel:
        from model_registry.device import module_nbytes
        from model_registry.loaders.common import import_lock
        from tasks.common import score_subset

        with import_lock:
            from sentence_transformers import SentenceTransformer

        body = SentenceTransformer(version.files_dir, device=version.device, local_files_only=True,
                                   trust_remote_code=False)
        if version.half:
            body.half()
        body.eval()
        head = load_head(version.files_dir)
        labels = [str(label) for label in head.classes_]

        def classify(items: list[dict]) -> list[dict]:
            # One encode for the whole batch, as SetFit's predict_proba does it
            # (float32 vectors: a half-precision body gives float16 ones).
            vectors = body.encode([item["text"] for item in items], batch_size=max(1, len(items)),
                                  convert_to_numpy=True, show_progress_bar=False)
            probabilities = head.predict_proba(vectors.astype("float32"))
            return [score_subset(dict(zip(labels, map(float, row))), item["labels"])
                    for item, row in zip(items, probabilities)]

        served = ServedModel(version.key, body, module_nbytes(body), version.device,
                             {"text-classification": classify})
        return served.declare(trained_labels=labels)
