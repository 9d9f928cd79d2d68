"""POST /text-classification: zero-shot probabilities for the caller's labels, or
a trained classifier's probabilities for its own labels (no labels needed)."""

from marshmallow import fields, post_load

from model_registry.catalogue import ZERO_SHOT_NLI
from trainers.setfit_text import SetFitTextTrainer

from .answers import SAMPLE_TEXT, probabilities_answer
from .common import (
    StrictSchema,
    TextOrTexts,
    as_batch,
    checked_labels,
    keep_top_k,
    labels_field,
    model_field,
    per_item,
    require_labels_for,
    top_k_field,
)
from .spec import TaskSpec, register

TASK = "text-classification"


class TextClassificationBody(StrictSchema):
    text = TextOrTexts(required=True, metadata={"description": "Text to classify, or a list for a batch."})
    labels = labels_field("Labels to score; for a batch, a list of labels per text (or one list for all). A model "
                          "you trained needs none: it scores all its own labels, or the subset of them you send.")
    top_k = top_k_field()
    model = model_field("english (default), multilingual (100+ languages), your own uploaded model, or a model "
                        "you trained (POST /models/{name}/train).")

    @post_load
    def to_items(self, data, **kwargs):
        texts, is_batch = as_batch(data["text"])
        labels = per_item(data["labels"], len(texts), "labels", is_batch)
        items = [{"text": text, "labels": checked_labels(item_labels)} for text, item_labels in zip(texts, labels)]
        return {"items": items, "is_batch": is_batch, "top_k": data["top_k"], "model": data["model"]}


class TextClassificationResponse(StrictSchema):
    probabilities = fields.Raw(metadata={
        "description": "{label: probability} per text; a zero-shot model scores each label on its own (entailment "
                       "vs contradiction), a trained one shares 1 between its labels (or the subset sent). "
                       "With top_k, the k likeliest, likeliest first.",
        "oneOf": [{"type": "object", "additionalProperties": {"type": "number"}},
                  {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}}]})


SPEC = register(TaskSpec(
    TASK, "/text-classification", "Zero-shot text classification, or with a classifier you trained.",
    "Score the caller's labels for a text (or a batch of texts)",
    TextClassificationBody, TextClassificationResponse, response_keys=("probabilities",),
    sample=lambda: {"text": SAMPLE_TEXT, "labels": ["check", "other"]},
    check_model=lambda model, body: require_labels_for(
        model, body["model"], TASK, [item["labels"] for item in body["items"]]),
    finish=lambda results, body: [keep_top_k(result, body["top_k"]) for result in results],
    check_answer=probabilities_answer, hf_loader=ZERO_SHOT_NLI, trainer=SetFitTextTrainer,
))
