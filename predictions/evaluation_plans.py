"""How an evaluation runs a version on a dataset of each format: the task route
its rows are sent to, the body a chunk of rows becomes (the route's batch
input: a list of texts, images or feature rows), what each row's answer is, and
the metrics of the rows answered (predictions/evaluation_metrics.py).

A dataset's parsed rows (training/datasets) keep their format's keys: text and
label; anchor, positive (and negative); sentence1, sentence2 and score; an
image's path in the dataset's folder and its label; a tabular row's features
and label (a number for a regression, a class name otherwise).

A prompt-completion dataset is scored by perplexity: each row's prompt +
completion is sent to /v1/completions to be scored (echo, logprobs 0, max_tokens
0: the log-probability of every token, nothing generated), and the completion's
tokens are those that start at or after the prompt's end (text_offset >= its
length; a token that straddles the two is the prompt's). The metrics are over all
the completion tokens of the rows answered: loss, their mean negative
log-likelihood, perplexity = exp(loss), and tokens, how many. The first token of
a text has no context and is never scored (with an empty prompt, the completion's
first token is not counted).

Chat datasets have no plan (NOT_EVALUATED): their prompt is the conversation
rendered by the model's chat template, which this loop does not render;
services/evaluations.py refuses them saying so.
"""

import base64
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import evaluation_metrics


class UnusableAnswer(Exception):
    """A route's answer this plan cannot read (a row of it fails, not the evaluation)."""


@dataclass(frozen=True)
class Plan:
    task: str
    path: str
    body: Callable[[str, list, str], dict]  # (model, rows, dataset folder) -> the request's body
    outputs: Callable[[dict, list], list]  # (answer, rows sent) -> one output per row
    score: Callable[[list, list], dict]  # (rows answered, their outputs) -> metrics


def _listed(answer: dict, key: str, count: int) -> list:
    values = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(values, list) or len(values) != count:
        raise UnusableAnswer(f"the answer has no list of {count} {key!r}")
    return values


def _likeliest(answer: dict, rows: list) -> list:
    labels = []
    for scores in _listed(answer, "probabilities", len(rows)):
        if not isinstance(scores, dict) or not scores:
            raise UnusableAnswer("a row's probabilities are not {label: probability}")
        labels.append(max(scores, key=scores.get))
    return labels


def _vectors(answer: dict, count: int) -> list:
    vectors = _listed(answer, "vector", count)
    if any(not isinstance(vector, list) or not vector for vector in vectors):
        raise UnusableAnswer("a vector is not a list of numbers")
    return vectors


def _grouped(vectors: list, groups: int) -> list:
    """[a1..an, b1..bn] -> [(a1, b1)...(an, bn)]: the texts of a chunk are sent field by field."""
    rows = len(vectors) // groups
    return [tuple(vectors[group * rows + row] for group in range(groups)) for row in range(rows)]


# --- classification of texts and images --------------------------------------------

def _text_label_body(model: str, rows: list, folder: str) -> dict:
    return {"model": model, "text": [row["text"] for row in rows]}


def _image_body(model: str, rows: list, folder: str) -> dict:
    root = os.path.realpath(folder)
    images = []
    for row in rows:
        path = os.path.realpath(os.path.join(root, row["image"]))
        if not path.startswith(root + os.sep):  # the parser wrote it; never read outside the dataset
            raise UnusableAnswer(f"{row['image']!r} is outside the dataset's folder")
        with open(path, "rb") as image:
            images.append(base64.b64encode(image.read()).decode("ascii"))
    return {"model": model, "image": images}


def _classes(rows: list, outputs: list) -> dict:
    return evaluation_metrics.classification([row["label"] for row in rows], outputs)


# --- tabular -------------------------------------------------------------------------

def _tabular_body(model: str, rows: list, folder: str) -> dict:
    return {"model": model, "features": [row["features"] for row in rows]}


def _tabular_outputs(answer: dict, rows: list) -> list:
    return _listed(answer, "prediction", len(rows))


def _tabular_score(rows: list, outputs: list) -> dict:
    """A label of numbers is a regression (the parser kept it a number); names of classes a classification."""
    if rows and all(isinstance(row["label"], (int, float)) for row in rows):
        try:
            return evaluation_metrics.regression([row["label"] for row in rows], outputs)
        except (TypeError, ValueError):
            raise UnusableAnswer("the version answers classes for a dataset of numbers") from None
    return _classes(rows, outputs)


# --- vectors -----------------------------------------------------------------------------

def _fields_body(*fields: str) -> Callable[[str, list, str], dict]:
    def body(model: str, rows: list, folder: str) -> dict:
        return {"model": model, "text": [row[field] for field in fields for row in rows]}

    return body


def _fields_outputs(groups: int) -> Callable[[dict, list], list]:
    def outputs(answer: dict, rows: list) -> list:
        return _grouped(_vectors(answer, len(rows) * groups), groups)

    return outputs


def _similarity_score(rows: list, outputs: list) -> dict:
    return evaluation_metrics.similarity([row["score"] for row in rows], np.array([left for left, _ in outputs]),
                                         np.array([right for _, right in outputs]))


def _retrieval_score(rows: list, outputs: list) -> dict:
    columns = [np.array([output[at] for output in outputs]) for at in range(len(outputs[0]))]
    return evaluation_metrics.retrieval(*columns)


# --- generation: perplexity ----------------------------------------------------------------

def _scored_texts_body(model: str, rows: list, folder: str) -> dict:
    return {"model": model, "prompt": [row["prompt"] + row["completion"] for row in rows], "echo": True,
            "max_tokens": 0, "logprobs": 0}


def _completion_logprobs(answer: dict, rows: list) -> list:
    """(sum of the completion tokens' log-probabilities, their count) per row."""
    choices = _listed(answer, "choices", len(rows))
    if any(not isinstance(choice, dict) for choice in choices):
        raise UnusableAnswer("a choice is not an object")
    outputs = []
    for row, choice in zip(rows, sorted(choices, key=lambda choice: choice.get("index", 0))):
        logprobs = choice.get("logprobs")
        scores = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
        offsets = logprobs.get("text_offset") if isinstance(logprobs, dict) else None
        if not isinstance(scores, list) or not isinstance(offsets, list) or len(scores) != len(offsets):
            raise UnusableAnswer("a choice has no token_logprobs and text_offset of the same length")
        start = len(row["prompt"])
        completion = [score for score, offset in zip(scores, offsets) if score is not None and offset >= start]
        if any(not isinstance(score, (int, float)) for score in completion):
            raise UnusableAnswer("a token's log-probability is not a number")
        outputs.append((float(sum(completion)), len(completion)))
    return outputs


def _perplexity(rows: list, outputs: list) -> dict:
    tokens = sum(count for _total, count in outputs)
    if not tokens:
        raise UnusableAnswer("no row has a completion token to score")
    loss = -sum(total for total, _count in outputs) / tokens
    # exp overflows a float past a mean loss of about 709 nats (no trained model's): no number then.
    perplexity = math.exp(loss) if loss < 709 else None
    return {"perplexity": perplexity, "loss": loss, "tokens": tokens}


PLANS = {
    "text-label": Plan("text-classification", "/text-classification", _text_label_body, _likeliest, _classes),
    "image-folders": Plan("image-classification", "/image-classification", _image_body, _likeliest, _classes),
    "tabular": Plan("tabular", "/predict", _tabular_body, _tabular_outputs, _tabular_score),
    "scored-pairs": Plan("text-vectorisation", "/text-vectorisation", _fields_body("sentence1", "sentence2"),
                         _fields_outputs(2), _similarity_score),
    "text-pairs": Plan("text-vectorisation", "/text-vectorisation", _fields_body("anchor", "positive"),
                       _fields_outputs(2), _retrieval_score),
    "text-triplets": Plan("text-vectorisation", "/text-vectorisation", _fields_body("anchor", "positive", "negative"),
                          _fields_outputs(3), _retrieval_score),
    "prompt-completion": Plan("text-generation", "/v1/completions", _scored_texts_body, _completion_logprobs,
                              _perplexity),
}

# Formats that cannot be evaluated, and why (the service's 422 says it).
NOT_EVALUATED = {
    "chat": "a chat dataset's perplexity needs each conversation rendered with the model's chat template, which "
            "evaluations do not render; evaluate the same examples as a prompt-completion dataset (the rendered "
            "conversation before the last assistant turn as the prompt, that turn as the completion)",
}
