"""POST /text-classification: zero-shot probabilities for the caller's labels."""

from flask.views import MethodView
from marshmallow import fields, post_load

from app.blueprint import Blueprint

from .common import (
    StrictSchema,
    StringList,
    TextOrTexts,
    as_batch,
    model_field,
    per_item,
    require_labels,
    run_task,
)

TASK = "text-classification"

blp = Blueprint(TASK, __name__, url_prefix="/text-classification", description="Zero-shot text classification.")


class TextClassificationBody(StrictSchema):
    text = TextOrTexts(required=True, metadata={"description": "Text to classify, or a list for a batch."})
    labels = StringList("labels", "MAX_LABELS", required=True, metadata={
        "description": "Labels to score; for a batch, a list of labels per text (or one list for all)."})
    model = model_field("english (default), multilingual (100+ languages), or your own uploaded model.")

    @post_load
    def to_items(self, data, **kwargs):
        texts, is_batch = as_batch(data["text"])
        labels = per_item(data["labels"], len(texts), "labels", is_batch)
        items = [{"text": text, "labels": require_labels(item_labels, "labels")} for text, item_labels in zip(texts, labels)]
        return {"items": items, "is_batch": is_batch, "model": data["model"]}


class TextClassificationResponse(StrictSchema):
    probabilities = fields.Raw(metadata={
        "description": "{label: probability} per text; each label is scored on its own (entailment vs contradiction).",
        "oneOf": [{"type": "object", "additionalProperties": {"type": "number"}},
                  {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}}]})


def predict(model_name: str | None, items: list[dict]) -> list[dict]:
    return run_task(TASK, model_name, items)


@blp.route("")
class TextClassification(MethodView):
    @blp.arguments(TextClassificationBody)
    @blp.response(200, TextClassificationResponse)
    def post(self, body):
        """Score the caller's labels for a text (or a batch of texts)"""
        results = predict(body["model"], body["items"])
        return {"probabilities": results if body["is_batch"] else results[0]}
