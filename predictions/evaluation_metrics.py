"""An evaluation's metrics, from a version's predictions and the dataset's gold
values, computed with scikit-learn and scipy (trainers/metrics.py's where a
training job reports the same ones, so a job's validation figures and an
evaluation's read alike).

- classification (text-label, image-folders, a tabular dataset of classes):
  accuracy, macro F1, per class precision/recall/F1/support, and the confusion
  matrix, its rows the true labels and its columns the predicted ones, both in
  the order of `confusion_matrix.labels` (every label seen in the gold values or
  the predictions, sorted);
- regression (a tabular dataset of numbers): R2, MAE, MSE;
- similarity (scored-pairs): Spearman and Pearson correlation of the cosine
  similarity of each pair's vectors with its gold score;
- retrieval (text-pairs, text-triplets): each anchor a query among every
  row's positive (and a triplet's negative) as candidates; its own positive is
  the one to find: accuracy@1, recall@5, recall@10, mean reciprocal rank; and for
  triplets the share whose anchor is closer to its positive than its negative.
"""

import numpy as np

from trainers.metrics import classification_metrics, regression_metrics

# Queries ranked at once (a block of queries x every candidate similarities).
RANK_BLOCK = 1024


def classification(gold: list, predicted: list) -> dict:
    labels = sorted({str(label) for label in gold} | {str(label) for label in predicted})
    return classification_metrics([str(label) for label in gold], [str(label) for label in predicted], labels)


def regression(gold: list, predicted: list) -> dict:
    return regression_metrics([float(value) for value in gold], [float(value) for value in predicted])


def _unit(vectors) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms == 0, 1.0, norms)


def cosines(left, right) -> np.ndarray:
    """The cosine similarity of each row of `left` with the same row of `right`."""
    return np.sum(_unit(left) * _unit(right), axis=1)


def similarity(gold_scores: list, left, right) -> dict:
    from scipy.stats import pearsonr, spearmanr

    predicted = cosines(left, right)
    gold = np.asarray(gold_scores, dtype=np.float64)
    constant = len(gold) < 2 or np.ptp(gold) == 0 or np.ptp(predicted) == 0
    return {
        # Undefined (null) when either side is constant: nothing to correlate.
        "spearman": None if constant else float(spearmanr(predicted, gold).statistic),
        "pearson": None if constant else float(pearsonr(predicted, gold).statistic),
        "mean_cosine": float(np.mean(predicted)) if len(predicted) else None,
    }


def ranks_of_positives(anchors, candidates) -> np.ndarray:
    """For anchor i, the 1-based rank of candidate i (its positive) among every
    candidate, by cosine similarity (a tie ranks the positive last)."""
    queries, pool = _unit(anchors), _unit(candidates)
    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), RANK_BLOCK):
        scores = queries[start:start + RANK_BLOCK] @ pool.T
        own = scores[np.arange(len(scores)), np.arange(start, start + len(scores))]
        ranks[start:start + len(scores)] = np.sum(scores >= own[:, None], axis=1)
    return ranks


def retrieval(anchors, positives, negatives=None) -> dict:
    candidates = np.concatenate([positives, negatives]) if negatives is not None else np.asarray(positives)
    ranks = ranks_of_positives(anchors, candidates)
    metrics = {
        "accuracy_at_1": float(np.mean(ranks <= 1)),
        "recall_at_5": float(np.mean(ranks <= 5)),
        "recall_at_10": float(np.mean(ranks <= 10)),
        "mrr": float(np.mean(1.0 / ranks)),
        "candidates": int(len(candidates)),
    }
    if negatives is not None:
        metrics["triplet_accuracy"] = float(np.mean(cosines(anchors, positives) > cosines(anchors, negatives)))
    return metrics
