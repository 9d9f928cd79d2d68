"""POST /text-vectorisation: a text (or list of texts) in, a vector (or list) out."""

from flask.views import MethodView
from app.blueprint import Blueprint
from marshmallow import fields

from .common import StrictSchema, TextOrTexts, as_batch, model_field, run_task

TASK = "text-vectorisation"

blp = Blueprint(TASK, __name__, url_prefix="/text-vectorisation", description="Text to vectors.")


class TextVectorisationBody(StrictSchema):
    text = TextOrTexts(required=True, metadata={"description": "Text, or a list of texts, to vectorise."})
    model = model_field(
        "english (default): English sentence vectors; multilingual: 50+ languages; "
        "clip: CLIP text vectors, in the same space as /image-vectorisation; "
        "or the name of your own uploaded model."
    )


class TextVectorisationResponse(StrictSchema):
    vector = fields.Raw(
        metadata={
            "description": "One vector for a single text, a list of vectors for a batch.",
            "oneOf": [
                {"type": "array", "items": {"type": "number"}},
                {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            ],
        }
    )


def predict(model_name: str | None, texts: list[str]) -> list[list[float]]:
    return run_task(TASK, model_name, texts)


@blp.route("")
class TextVectorisation(MethodView):
    @blp.arguments(TextVectorisationBody)
    @blp.response(200, TextVectorisationResponse)
    def post(self, body):
        """Vectorise a text or a list of texts"""
        texts, is_batch = as_batch(body["text"])
        vectors = predict(body["model"], texts)
        return {"vector": vectors if is_batch else vectors[0]}
