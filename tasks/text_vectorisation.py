"""POST /text-vectorisation: a text (or list of texts) in, a vector (or list) out."""

from model_registry.catalogue import SENTENCE_TRANSFORMER
from trainers.sentence_pairs import SentencePairsTrainer

from .answers import SAMPLE_TEXT, vector_answer
from .common import StrictSchema, TextOrTexts, TextVectorisationResponse, as_batch, model_field
from .spec import TaskSpec, register

TASK = "text-vectorisation"


class TextVectorisationBody(StrictSchema):
    text = TextOrTexts(large_batches=True, required=True, metadata={"description": (
        "Text, or a list of texts, to vectorise: at most INFER_MAX_EMBEDDING_INPUTS texts and "
        "INFER_MAX_EMBEDDING_CHARS characters in all.")})
    model = model_field(
        "english (default): English sentence vectors; multilingual: 50+ languages; "
        "clip: CLIP text vectors, in the same space as /image-vectorisation; "
        "or the name of your own uploaded model."
    )


SPEC = register(TaskSpec(
    TASK, "/text-vectorisation", "Text to vectors.", "Vectorise a text or a list of texts",
    TextVectorisationBody, TextVectorisationResponse, response_keys=("vector",), sample=lambda: SAMPLE_TEXT,
    items=lambda body: as_batch(body["text"]), check_answer=vector_answer,
    to_user_input=lambda text: {"text": text}, hf_loader=SENTENCE_TRANSFORMER, trainer=SentencePairsTrainer,
))
