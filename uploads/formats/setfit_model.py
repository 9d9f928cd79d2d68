"""A SetFit text classifier made by a training job: a sentence-transformers body
and a logistic-regression head over its sentence vectors.

SetFit's own save_pretrained writes the head as a joblib pickle
(model_head.pkl); a version's files never hold a pickle, so the trainer saves
the head's fitted numbers instead (coef_ and intercept_ as safetensors, the
classes as JSON), and serving sets them on a fresh LogisticRegression, whose
predict_proba then answers exactly as the trained head did.
"""

import json
import os

from model_registry.served_model import ServedModel

from .base import TrainedFormat, Version

HEAD_WEIGHTS = "head.safetensors"
HEAD_CLASSES = "head.json"


def save_head(head, directory: str) -> None:
    """Write a fitted scikit-learn LogisticRegression's numbers to `directory`."""
    import numpy as np
    from safetensors.numpy import save_file

    os.makedirs(directory, exist_ok=True)
    save_file({"coef": np.ascontiguousarray(head.coef_), "intercept": np.ascontiguousarray(head.intercept_)},
              os.path.join(directory, HEAD_WEIGHTS))
    with open(os.path.join(directory, HEAD_CLASSES), "w") as classes_file:
        json.dump({"classes": [str(label) for label in head.classes_]}, classes_file)


def load_head(directory: str):
    """The LogisticRegression save_head wrote, ready for predict_proba."""
    import numpy as np
    from safetensors.numpy import load_file
    from sklearn.linear_model import LogisticRegression

    weights = load_file(os.path.join(directory, HEAD_WEIGHTS))
    with open(os.path.join(directory, HEAD_CLASSES)) as classes_file:
        classes = json.load(classes_file)["classes"]
    head = LogisticRegression()
    head.coef_ = weights["coef"]
    head.intercept_ = weights["intercept"]
    head.classes_ = np.array(classes)
    head.n_features_in_ = head.coef_.shape[1]
    return head


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
