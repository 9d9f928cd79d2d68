"""POST /v1/embeddings: OpenAI's embeddings, from the same models and batcher as /text-vectorisation."""

import base64

import numpy as np
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate

from core.errors import BadRequest
from model_registry.served_model import Capability
from tasks.common import StrictSchema, TextOrTexts, as_batch
from tasks.text_vectorisation import TASK
from web.blueprint import Blueprint

from .common import resolve_model
from .errors import documented_errors

blp = Blueprint("openai-embeddings", __name__, url_prefix="/v1/embeddings",
                description="OpenAI-compatible: text to vectors.")

TOKEN_ARRAYS_REFUSED = (
    "Token arrays are not accepted: send the text itself, a string or a list of strings (each model reads "
    "text with its own tokenizer, not OpenAI's). LangChain's OpenAIEmbeddings sends token arrays unless "
    "it is created with check_embedding_ctx_length=False."
)


def _is_token_array_item(item) -> bool:
    # A list of ints is one token array; a list of lists, several.
    return isinstance(item, list) or (isinstance(item, int) and not isinstance(item, bool))


class EmbeddingInput(TextOrTexts):
    """Text or texts, as /text-vectorisation takes them (same limits); token arrays refused by name."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list) and any(_is_token_array_item(item) for item in value):
            raise ValidationError(TOKEN_ARRAYS_REFUSED)
        return super()._deserialize(value, attr, data, **kwargs)


class EmbeddingsBody(StrictSchema):
    input = EmbeddingInput(
        empty_error="An input cannot be an empty string.", large_batches=True, required=True,
        metadata={"description": "A text, or a list of texts (at most INFER_MAX_EMBEDDING_INPUTS, each at most "
                                 "INFER_MAX_TEXT_LENGTH characters, INFER_MAX_EMBEDDING_CHARS in all). "
                                 "Token arrays are refused."},
    )
    model = fields.String(
        required=True,
        metadata={"description": "A text-vectorisation model: an id from GET /v1/models (all-MiniLM-L6-v2), "
                                 "a public name (english, multilingual, clip) or your own model's name."},
    )
    encoding_format = fields.String(
        load_default="float", validate=validate.OneOf(["float", "base64"]),
        metadata={"description": "float: lists of numbers; base64: little-endian float32 bytes, base64-encoded "
                                 "(what OpenAI's Python SDK asks for unless told otherwise)."},
    )
    dimensions = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1),
        metadata={"description": "The model's own vector size, or fewer for a model trained for shortened "
                                 "(Matryoshka) vectors: the first dimensions, scaled back to unit length."},
    )
    user = fields.String(
        load_default=None, allow_none=True,
        metadata={"description": "Accepted for compatibility and ignored: requests are already tied to an "
                                 "account by their API key."},
    )


class Embedding(Schema):
    object = fields.String(metadata={"description": "Always embedding."})
    index = fields.Integer(metadata={"description": "The input's position in the request."})
    embedding = fields.Raw(metadata={"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]})


class EmbeddingsUsage(Schema):
    prompt_tokens = fields.Integer(
        allow_none=True,
        metadata={"description": "Tokens the model read, special tokens included, after its truncation; "
                                 "null for models that cannot count them (uploaded code)."},
    )
    total_tokens = fields.Integer(allow_none=True, metadata={"description": "The same as prompt_tokens."})


class EmbeddingsResponse(Schema):
    object = fields.String(metadata={"description": "Always list."})
    data = fields.List(fields.Nested(Embedding))
    model = fields.String(metadata={"description": "The model as the request named it."})
    usage = fields.Nested(EmbeddingsUsage)


def shorten(vectors: list[list[float]], dimensions: int, truncatable: bool, name: str) -> list[list[float]]:
    """The first `dimensions` of each vector, scaled back to unit length, as OpenAI does."""
    native = len(vectors[0])
    if dimensions == native:
        return vectors
    if dimensions > native:
        raise BadRequest(f"dimensions is {dimensions}, but {name} makes vectors of {native} dimensions: "
                         f"send at most {native}.", param="dimensions")
    if not truncatable:
        raise BadRequest(f"{name} was not trained for shortened (Matryoshka) vectors: cut short, its vectors "
                         f"lose much of their meaning. Its vectors have {native} dimensions: leave dimensions "
                         f"out or send {native}.", param="dimensions")
    cut = np.asarray(vectors, dtype=np.float64)[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return (cut / np.where(norms == 0, 1, norms)).astype(np.float32).tolist()


def as_base64(vector: list[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


@blp.route("")
class Embeddings(MethodView):
    # 400 as OpenAI answers a body that does not validate (the service's own routes say 422).
    @blp.arguments(EmbeddingsBody, error_status_code=400)
    @blp.response(200, EmbeddingsResponse)
    @documented_errors("400")
    def post(self, body):
        """Vectorise a text or a list of texts (OpenAI's embeddings)"""
        return embeddings(body)


def embeddings(body: dict) -> dict:
    """The answer to an embeddings body the schema loaded (the view's, and a run
    made for an account: api/prediction_dispatch.py)."""
    texts, _is_batch = as_batch(body["input"])
    served, name = resolve_model(TASK, body["model"])
    # The same runner and batcher as /text-vectorisation: the same vectors,
    # and requests to both share forward passes.
    vectors = served.run(TASK, texts)
    if body["dimensions"] is not None:
        # Checked once the model has answered: a model's vector size is known only then.
        vectors = shorten(vectors, body["dimensions"], Capability.SHORTER_VECTORS in served.capabilities, name)
    encode = as_base64 if body["encoding_format"] == "base64" else (lambda vector: vector)
    tokens = sum(served.count_tokens(texts)) if Capability.TOKEN_COUNTS in served.capabilities else None
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": index, "embedding": encode(vector)}
                 for index, vector in enumerate(vectors)],
        "model": name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
