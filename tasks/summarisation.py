"""POST /summarisation: a summary of a text (or of each text in a batch).

Texts longer than the model's input limit (1024 tokens for the default
distilbart-cnn-12-6, 512 for T5) are truncated to it: the summary covers the
beginning of the text.
"""

from flask.views import MethodView
from marshmallow import fields

from app.blueprint import Blueprint

from .common import StrictSchema, TextOrTexts, as_batch, model_field, run_task

TASK = "summarisation"

blp = Blueprint(TASK, __name__, url_prefix="/summarisation", description="Summarisation.")


class SummarisationBody(StrictSchema):
    text = TextOrTexts(required=True, metadata={"description": "Text to summarise, or a list for a batch."})
    model = model_field("english (default), t5-base-qa-summary-emotion, or your own uploaded model.")


class OutputResponse(StrictSchema):
    output = fields.Raw(metadata={"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})


@blp.route("")
class Summarisation(MethodView):
    @blp.arguments(SummarisationBody)
    @blp.response(200, OutputResponse)
    def post(self, body):
        """Summarise a text (or a batch of texts)"""
        texts, is_batch = as_batch(body["text"])
        summaries = run_task(TASK, body["model"], [{"text": text} for text in texts])
        return {"output": summaries if is_batch else summaries[0]}
