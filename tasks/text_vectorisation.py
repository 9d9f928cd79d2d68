"""POST /text-vectorisation: a text (or list of texts) in, a vector (or list) out."""

from flask.views import MethodView

from app.blueprint import Blueprint
from model_registry.catalogue import SENTENCE_TRANSFORMER

from .answers import SAMPLE_TEXT, vector_answer
from .common import StrictSchema, TextOrTexts, TextVectorisationResponse, as_batch, model_field, run_task
from .spec import TaskSpec, register

TASK = "text-vectorisation"

blp = Blueprint(TASK, __name__, url_prefix="/text-vectorisation", description="Text to vectors.")


class TextVectorisationBody(StrictSchema):
    text = TextOrTexts(required=True, metadata={"description": "Text, or a list of texts, to vectorise."})
    model = model_field(
        "english (default): English sentence vectors; multilingual: 50+ languages; "
        "clip: CLIP text vectors, in the same space as /image-vectorisation; "
        "or the name of your own uploaded model."
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
        return SPEC.answer(vectors, is_batch)


SPEC = register(TaskSpec(
    TASK, blp, response_keys=("vector",), sample=lambda: SAMPLE_TEXT, check_answer=vector_answer,
    to_user_input=lambda text: {"text": text}, hf_loader=SENTENCE_TRANSFORMER,
    trainer="training.trainers.sentence_pairs:SentencePairsTrainer",
))
