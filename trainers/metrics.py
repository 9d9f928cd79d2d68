"""Validation metrics, computed with scikit-learn (never the `evaluate` package,
which fetches its metric code from the hub at run time)."""

import math


def classification_metrics(y_true: list, y_pred: list, labels: list, probabilities=None) -> dict:
    """accuracy, macro F1, per-class precision/recall/F1/support and the confusion
    matrix (rows: true label, columns: predicted, in `labels` order); with the
    predicted probabilities (rows in `labels` order), also the log loss."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, precision_recall_fscore_support

    labels = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            str(label): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": {
            "labels": [str(label) for label in labels],
            "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        },
    }
    if probabilities is not None and len(y_true):
        metrics["log_loss"] = float(log_loss(y_true, probabilities, labels=labels))
    return metrics


def regression_metrics(y_true: list, y_pred: list) -> dict:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else None,
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "mse": float(mean_squared_error(y_true, y_pred)),
    }


def perplexity(loss: float | None) -> float | None:
    """A language model's perplexity from its mean cross-entropy loss (nats)."""
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else math.inf


def scored_classification(y_true: list, predicted: list, classes: list, probabilities) -> dict:
    """classification_metrics of a fitted classifier (its `classes`, the columns of
    `probabilities`) on rows that may hold labels it never saw: those are classes it
    gives probability 0."""
    import numpy as np

    unseen = sorted({label for label in y_true if label not in set(classes)}, key=str)
    probabilities = np.hstack([np.asarray(probabilities), np.zeros((len(y_true), len(unseen)))])
    return classification_metrics(y_true, predicted, list(classes) + unseen, probabilities)
