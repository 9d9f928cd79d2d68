"""POST /emotion: the GoEmotions labels of a text, as a comma-separated string.

The labels whose probability reaches INFER_EMOTION_THRESHOLD, likeliest first;
when none does, the likeliest label alone, so the answer is never empty. Texts
longer than the model's limit are truncated to it.

The answer carries it twice: under `emotion`, the key Backprop's Python client
reads (every release), and under `output`, the key the Backprop API reference
documents.
"""

from model_registry.catalogue import EMOTION_CLASSIFIER

from .answers import SAMPLE_TEXT, string_answer
from .common import StrictSchema, TextOrTexts, model_field, string_or_list, text_items
from .spec import TaskSpec, register

TASK = "emotion"


class EmotionBody(StrictSchema):
    text = TextOrTexts(required=True, metadata={"description": "Text, or a list for a batch."})
    model = model_field("english (default): a GoEmotions classifier; t5-base-qa-summary-emotion; or your own model.")


class EmotionResponse(StrictSchema):
    emotion = string_or_list(description="Comma-separated emotions, likeliest first, or a list for a batch: "
                                         "the key Backprop's Python client reads.")
    output = string_or_list(description="The same value: the key the Backprop API reference documents.")


SPEC = register(TaskSpec(
    TASK, "/emotion", "Emotion detection (GoEmotions labels).", "Detect the emotions in a text (or a batch of texts)",
    EmotionBody, EmotionResponse, response_keys=("emotion", "output"), sample=lambda: {"text": SAMPLE_TEXT},
    items=text_items, check_answer=string_answer, hf_loader=EMOTION_CLASSIFIER,
))
