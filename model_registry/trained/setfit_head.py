"""A SetFit classifier's head as training writes it and serving reads it: the
fitted LogisticRegression's numbers (coef_ and intercept_ as safetensors, the
classes as JSON), never SetFit's joblib pickle."""

import json
import os

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
