"""POST /summarisation: a summary of a text (or of each text in a batch).

The answer carries it twice: under `summary`, the key Backprop's Python client
reads (every release), and under `output`, the key the Backprop API reference
documents.

Texts longer than the model's input limit (1024 tokens for the default
distilbart-cnn-12-6, 512 for T5) are truncated to it: the summary covers the
beginning of the text.
"""

from flask.views import MethodView

from app.blueprint import Blueprint
from model_registry.catalogue import SEQ2SEQ

from .answers import SAMPLE_TEXT, string_answer
from .common import StrictSchema, TextOrTexts, as_batch, model_field, run_task, string_or_list
from .spec import TaskSpec, register

TASK = "summarisation"

blp = Blueprint(TASK, __name__, url_prefix="/summarisation", description="Summarisation.")


class SummarisationBody(StrictSchema):
    text = TextOrTexts(required=True, metadata={"description": "Text to summarise, or a list for a batch."})
    model = model_field("english (default), t5-base-qa-summary-emotion, or your own uploaded model.")


class SummarisationResponse(StrictSchema):
    summary = string_or_list(description="The summary, or a list for a batch: the key Backprop's Python client reads.")
    output = string_or_list(description="The same value: the key the Backprop API reference documents.")


@blp.route("")
class Summarisation(MethodView):
    @blp.arguments(SummarisationBody)
    @blp.response(200, SummarisationResponse)
    def post(self, body):
        """Summarise a text (or a batch of texts)"""
        texts, is_batch = as_batch(body["text"])
        summaries = run_task(TASK, body["model"], [{"text": text} for text in texts])
        return SPEC.answer(summaries, is_batch)


SPEC = register(TaskSpec(
    TASK, blp, response_keys=("summary", "output"), sample=lambda: {"text": SAMPLE_TEXT},
    check_answer=string_answer, hf_loader=SEQ2SEQ,
))
