"""POST /qa: answer a question from a context, with the conversation so far."""

from marshmallow import ValidationError, fields, post_load

from model_registry.catalogue import EXTRACTIVE_QA

from .answers import SAMPLE_TEXT, string_answer
from .common import StrictSchema, StringList, TextOrTexts, as_batch, model_field, per_item
from .spec import TaskSpec, register

TASK = "qa"


class QABody(StrictSchema):
    question = TextOrTexts(required=True, metadata={"description": "A question, or a list for a batch."})
    context = TextOrTexts(required=True, metadata={"description": "The text to answer from; one per question."})
    prev_q = StringList("previous questions", "MAX_BATCH_SIZE", load_default=None, metadata={"description": (
        "Earlier questions of the conversation; for a batch, a list per item, or one flat list shared by every "
        "item (Backprop's Python client 0.0.x flattened a batch's histories into one list; every release sends "
        "[] for no history).")})
    prev_a = StringList("previous answers", "MAX_BATCH_SIZE", load_default=None, metadata={"description": (
        "Their answers, one per earlier question, in the same shape as prev_q.")})
    model = model_field(
        "english (default): extractive QA, answers 'unknown' when the context holds no answer; "
        "t5-base-qa-summary-emotion: Backprop's generative T5; or your own uploaded model."
    )

    @post_load
    def to_items(self, data, **kwargs):
        questions, is_batch = as_batch(data["question"])
        contexts, context_batch = as_batch(data["context"])
        if context_batch != is_batch or len(contexts) != len(questions):
            raise ValidationError({"context": ["Send one context per question: both single, or lists of one length."]})
        prev_q = per_item(data["prev_q"], len(questions), "prev_q", is_batch, default=[])
        prev_a = per_item(data["prev_a"], len(questions), "prev_a", is_batch, default=[])
        for index, (qs, answers) in enumerate(zip(prev_q, prev_a)):
            if len(qs) != len(answers):
                where = f" in item {index}" if is_batch else ""
                raise ValidationError({"prev_a": [f"Send one previous answer per previous question{where}: "
                                                  f"{len(qs)} questions, {len(answers)} answers."]})
        items = [
            {"question": q, "context": c, "prev_q": pq, "prev_a": pa}
            for q, c, pq, pa in zip(questions, contexts, prev_q, prev_a)
        ]
        return {"items": items, "is_batch": is_batch, "model": data["model"]}


class QAResponse(StrictSchema):
    answer = fields.Raw(metadata={"description": "The answer, or a list for a batch.",
                                  "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})


SPEC = register(TaskSpec(
    TASK, "/qa", "Question answering.", "Answer a question (or a batch) from its context and the conversation so far",
    QABody, QAResponse, response_keys=("answer",),
    sample=lambda: {"question": "What is checked?", "context": SAMPLE_TEXT, "prev_q": [], "prev_a": []},
    check_answer=string_answer, hf_loader=EXTRACTIVE_QA,
))
