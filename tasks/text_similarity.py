"""POST /text-similarity: how alike two texts are, as the cosine similarity of their
vectors from a text vectoriser (the models of /text-vectorisation), from -1 to 1.

A pair, or a batch of pairs: `text_a` and `text_b` both texts, or lists of one
length (the i-th of one with the i-th of the other). Every text of the request
goes through the model's batched text-to-vector runner in one call, as a
/text-vectorisation batch does; the route then compares the vectors of each pair.
"""

import math

from marshmallow import ValidationError, fields, post_load

from model_registry.catalogue import SENTENCE_TRANSFORMER

from .answers import SAMPLE_TEXT, vector_answer
from .common import StrictSchema, TextOrTexts, as_batch, model_field
from .spec import TaskSpec, register

TASK = "text-similarity"

EMPTY = "The text is empty: send at least one character to compare."


class TextSimilarityBody(StrictSchema):
    text_a = TextOrTexts(required=True, empty_error=EMPTY, metadata={
        "description": "A text, or a list of texts for a batch of pairs."})
    text_b = TextOrTexts(required=True, empty_error=EMPTY, metadata={
        "description": "The text to compare it with; for a batch, a list of the same length, in the same order."})
    model = model_field("english (default): English sentence vectors; multilingual: 50+ languages; "
                        "or your own uploaded text vectoriser that declares text-similarity.")

    @post_load
    def to_items(self, data, **kwargs):
        texts_a, is_batch = as_batch(data["text_a"])
        texts_b, b_batch = as_batch(data["text_b"])
        if b_batch != is_batch or len(texts_b) != len(texts_a):
            raise ValidationError({"text_b": ["Send one text_b per text_a: both single, or lists of one length "
                                              f"(got {len(texts_a)} and {len(texts_b)})."]})
        # One call for every text: the pairs' first texts, then their second ones.
        return {"items": texts_a + texts_b, "is_batch": is_batch, "model": data["model"]}


class TextSimilarityResponse(StrictSchema):
    similarity = fields.Raw(metadata={
        "description": "The cosine similarity of the two texts' vectors, from -1 to 1 (1: the same direction), "
                       "or a list of them for a batch of pairs.",
        "oneOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]})


def cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    # A zero vector points nowhere: it is like nothing, not like everything.
    return math.fsum(x * y for x, y in zip(a, b)) / norms if norms else 0.0


def pair_similarities(vectors: list, body: dict) -> list[float]:
    """The vectors of [a1..an, b1..bn] -> [cos(a1, b1), ..., cos(an, bn)]."""
    half = len(vectors) // 2
    return [cosine(a, b) for a, b in zip(vectors[:half], vectors[half:])]


SPEC = register(TaskSpec(
    TASK, "/text-similarity", "Similarity of two texts (cosine of their vectors).",
    "Compare two texts (or each pair of a batch)",
    TextSimilarityBody, TextSimilarityResponse, response_keys=("similarity",),
    # What a model serving it runs: a text to its vector, as for text-vectorisation.
    sample=lambda: SAMPLE_TEXT, finish=pair_similarities, check_answer=vector_answer,
    to_user_input=lambda text: {"text": text}, hf_loader=SENTENCE_TRANSFORMER,
))
