"""POST /summarisation: a summary of a text (or of each text in a batch).

The answer carries it twice: under `summary`, the key Backprop's Python client
reads (every release), and under `output`, the key the Backprop API reference
documents.

Texts longer than the model's input limit (1024 tokens for the default
distilbart-cnn-12-6, 512 for T5) are truncated to it: the summary covers the
beginning of the text.
"""

from model_registry.catalogue import SEQ2SEQ

from .answers import SAMPLE_TEXT, string_answer
from .common import StrictSchema, TextOrTexts, model_field, string_or_list, text_items
from .spec import TaskSpec, register

TASK = "summarisation"


class SummarisationBody(StrictSchema):
    text = TextOrTexts(required=True, metadata={"description": "Text to summarise, or a list for a batch."})
    model = model_field("english (default), t5-base-qa-summary-emotion, or your own uploaded model.")


class SummarisationResponse(StrictSchema):
    summary = string_or_list(description="The summary, or a list for a batch: the key Backprop's Python client reads.")
    output = string_or_list(description="The same value: the key the Backprop API reference documents.")


SPEC = register(TaskSpec(
    TASK, "/summarisation", "Summarisation.", "Summarise a text (or a batch of texts)",
    SummarisationBody, SummarisationResponse, response_keys=("summary", "output"), sample=lambda: {"text": SAMPLE_TEXT},
    items=text_items, check_answer=string_answer, hf_loader=SEQ2SEQ,
))
