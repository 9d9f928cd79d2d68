"""Image classification by a linear probe on frozen CLIP image features: the
evaluation of the CLIP paper (Radford et al. 2021, section 3.2), a scikit-learn
LogisticRegression (L-BFGS) on the L2-normalised image embeddings.

CLIP stays frozen, so the version's files are only the head (coef_, intercept_
as safetensors, the classes in trained.json); serving loads the base CLIP again
by its catalogue key. The fit is one pass, reported as one epoch; the image
features are the costly part, so they are the checkpoint a crashed run resumes from.

Keeping on from a version: its rows are not at hand, only its head, so the probe
is warm started: L-BFGS starts from the parent's coefficients and fits the new
rows (a convex fit: it ends where a fit on them alone would, sooner). A new set
of labels cannot start from the parent's: the probe is refit. Each epoch also
reports train_ metrics on (a sample of) the training images; a test dataset is
encoded and scored once, after the fit.
"""

import json
import os
import time

from marshmallow import fields, validate

from model_registry.trained.clip_head import (  # noqa: F401
    HEAD_FILE,
    TRAINED_FILE,
    head_probabilities,
    image_encoder,
    load_head,
)
from trainers.base import TaskTrainer, TrainingFailed, TrainingResult, TrainingRun, prefixed, train_metrics_sample
from trainers.tabular import METRIC_KEYS, OnePassHyperparameters

FEATURES_CHECKPOINT = "features.safetensors"


class ClipProbeHyperparameters(OnePassHyperparameters):
    # batch_size stays: the images CLIP encodes at once.
    C = fields.Float(load_default=1.0, validate=validate.Range(min=1e-6, max=1e6), metadata={
        "description": "Inverse regularisation strength of the logistic regression: smaller is stronger."})


def _open_images(rows: list, dataset_dir: str) -> list:
    from PIL import Image

    root = os.path.realpath(dataset_dir)
    images = []
    for row in rows:
        path = os.path.realpath(os.path.join(root, row["image"]))
        if not path.startswith(root + os.sep):  # the dataset parser's paths never leave its folder
            raise TrainingFailed(f"{row['image']!r} is outside the dataset's folder.")
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except Exception as exc:  # PIL raises many kinds for a file that is not an image
            raise TrainingFailed(f"{row['image']} cannot be read as an image ({exc}).") from None
    return images


def _features_of(run: TrainingRun, encode, rows: list, dataset_dir: str | None = None):
    """The rows' image features; their paths point into dataset_dir (default: the training dataset's)."""
    import numpy as np

    size = run.hyperparameters["batch_size"]
    folder = dataset_dir or run.dataset_dir
    batches = [encode(_open_images(rows[start:start + size], folder)) for start in range(0, len(rows), size)]
    return np.concatenate(batches) if batches else None


def _checkpointed_features(run: TrainingRun, encode):
    """(train, validation) features, from the checkpoint when a crashed run left them."""
    from safetensors.numpy import load_file, save_file

    path = os.path.join(run.checkpoint_dir, FEATURES_CHECKPOINT)
    if os.path.isfile(path):
        saved = load_file(path)
        if len(saved["train"]) == len(run.train_rows):
            run.reporter.log("resumed: the image features were checkpointed before the crash")
            return saved["train"], saved.get("validation")
    train = _features_of(run, encode, run.train_rows)
    validation = _features_of(run, encode, run.validation_rows, run.validation_dataset_dir)
    os.makedirs(run.checkpoint_dir, exist_ok=True)
    save_file({"train": train, **({"validation": validation} if validation is not None else {})}, path + ".partial")
    os.replace(path + ".partial", path)
    return train, validation


def _evaluate(head, features, labels: list) -> tuple[float | None, dict]:
    import numpy as np

    from trainers.metrics import classification_metrics

    if not labels:
        return None, dict.fromkeys(METRIC_KEYS["classification"])
    classes = head.classes_.tolist()
    # A validation label never seen in training: a class with probability 0.
    unseen = sorted(set(labels) - set(classes))
    probabilities = np.hstack([head.predict_proba(features), np.zeros((len(labels), len(unseen)))])
    metrics = classification_metrics(labels, head.predict(features).tolist(), classes + unseen, probabilities)
    return metrics["log_loss"], metrics


class ClipProbeTrainer(TaskTrainer):
    task = "image-classification"
    library = "scikit-learn"
    dataset_formats = ("image-folders",)
    default_base_model = "clip-vit-base-patch32"
    base_loaders = ("clip",)
    hyperparameters = ClipProbeHyperparameters
    limitations = ("CLIP stays frozen: only a linear head is fitted (no fine-tuning, no augmentation), in one pass "
                   "over the training images (no epochs, no early stopping).")

    classifies_its_labels = True
    continues_from_formats = ("clip-probe",)
    scores_test_rows = True

    def train(self, run: TrainingRun) -> TrainingResult:
        import numpy as np
        import sklearn
        import torch
        import transformers
        from safetensors.numpy import save_file
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        started = time.monotonic()
        torch.set_num_threads(run.torch_threads)
        if run.base_model is None or run.base_model_dir is None:
            raise TrainingFailed("A CLIP linear probe needs its base CLIP model.")
        train_labels = [str(row["label"]) for row in run.train_rows]
        validation_labels = [str(row["label"]) for row in run.validation_rows]
        if len(set(train_labels)) < 2:
            raise TrainingFailed("A classifier needs images of at least two labels in the training set.")
        run.reporter.log(f"encoding {len(train_labels)} training and {len(validation_labels)} validation images "
                         f"with {run.base_model} (frozen)")
        _, encode = image_encoder(run.base_model_dir)
        train_features, validation_features = _checkpointed_features(run, encode)
        # Fitted in float64: float32 probabilities miss summing to 1 by more than log_loss allows.
        train_features = train_features.astype(np.float64)
        if validation_features is not None:
            validation_features = validation_features.astype(np.float64)

        head = LogisticRegression(C=run.hyperparameters["C"], max_iter=1000, random_state=run.hyperparameters["seed"])
        continued = _start_from_parent(head, run.parent_dir, train_labels) if run.parent_dir else ""
        with threadpool_limits(limits=run.torch_threads):  # BLAS would take every core of the host
            head.fit(train_features, train_labels)
        trained_s = time.monotonic() - started
        train_loss, _ = _evaluate(head, train_features, train_labels)
        validation_loss, metrics = _evaluate(head, validation_features, validation_labels)
        sample = train_metrics_sample(list(range(len(train_labels))), run.train_metrics_rows,
                                      run.hyperparameters["seed"])
        _, train_metrics = _evaluate(head, train_features[sample], [train_labels[i] for i in sample])
        stats = {"epoch": 1, "step": len(train_labels), "train_loss": train_loss, "validation_loss": validation_loss,
                 "learning_rate": None, "elapsed_s": time.monotonic() - started, **metrics,
                 **prefixed(train_metrics, "train_"), "train_metrics_rows": len(sample)}
        run.reporter.epoch(stats)
        test_metrics = None
        if run.test_rows:  # the fitted head on the test images, encoded once here
            test_features = _features_of(run, encode, run.test_rows, run.test_dataset_dir).astype(np.float64)
            _, test_metrics = _evaluate(head, test_features, [str(row["label"]) for row in run.test_rows])

        classes = head.classes_.tolist()
        # C order: coef_ may be Fortran-ordered, and safetensors writes the raw buffer.
        save_file({"coef": np.ascontiguousarray(head.coef_), "intercept": np.ascontiguousarray(head.intercept_)},
                  os.path.join(run.output_dir, HEAD_FILE))
        description = f"linear probe on {run.base_model} image features: {len(classes)} labels"
        trained = {"tasks": [self.task], "description": description, "format": "clip-probe",
                   "base_model": run.base_model, "labels": classes, "C": run.hyperparameters["C"],
                   "library": f"scikit-learn {sklearn.__version__}, transformers {transformers.__version__}"}
        with open(os.path.join(run.output_dir, TRAINED_FILE), "w") as file:
            json.dump(trained, file, indent=2)
        return TrainingResult(format="clip-probe", tasks=[self.task], best_epoch=1, metrics=stats,
                              description=description, samples_per_second=len(train_labels) / trained_s,
                              continued=continued, test_metrics=test_metrics)


def _start_from_parent(head, parent_dir: str, train_labels: list) -> str:
    """Warm start `head` from the parent probe's coefficients when its labels are
    these; what was done, for the log."""
    coef, intercept, classes = load_head(parent_dir)
    if sorted(classes) != sorted(set(train_labels)):
        return "refit: the labels differ from the parent's, which a warm start cannot add or drop"
    # Binary: one row of coefficients for classes[1], as scikit-learn keeps them.
    head.set_params(warm_start=True)
    head.coef_, head.intercept_ = coef.astype("float64"), intercept.astype("float64")
    return "warm start: the solver starts from the parent's coefficients"
