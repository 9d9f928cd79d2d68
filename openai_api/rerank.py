"""POST /v1/rerank: reranking in Cohere's and Jina's shape, the one LangChain's and
LlamaIndex's rerankers (CohereRerank, JinaRerank) call.

The same cross-encoders, runner and batcher as /rerank (tasks/rerank.py), so the
scores are the same; only the shape differs: `documents` may be strings or
`{"text"}` objects, the answer is `{"id", "model", "results": [{"index",
"relevance_score", "document"?}], "usage"}`, and errors come in OpenAI's shape
(openai_api/errors.py), as everywhere under /v1.
"""

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, post_load, validate

from core.request_context import current_request_id
from tasks.common import StrictSchema, check_text
from tasks.rerank import TASK, check_documents, pair_items, ranked
from web.blueprint import Blueprint

from .common import resolve_model
from .errors import documented_errors

blp = Blueprint("openai-rerank", __name__, url_prefix="/v1/rerank",
                description="Cohere- and Jina-compatible: documents ranked by their relevance to a query.")


class RerankDocuments(fields.Field):
    """Strings, or {"text": string} objects (Cohere's and Jina's two forms)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("Send a list of documents: strings, or objects with a text.")
        texts = []
        for index, item in enumerate(value):
            if isinstance(item, dict) and set(item) == {"text"}:
                item = item["text"]
            if not isinstance(item, str):
                raise ValidationError(f"documents[{index}] is neither a string nor an object with only a text "
                                      "string ({\"text\": \"...\"}).")
            texts.append(item)
        return texts


class V1RerankBody(StrictSchema):
    model = fields.String(required=True, metadata={"description": (
        "A rerank model: an id from GET /v1/models (ms-marco-MiniLM-L6-v2), the public name english, or your "
        "own model's name.")})
    query = fields.String(required=True, validate=validate.Length(min=1, error="The query is empty: send the "
                                                                                "text to rank the documents against."))
    documents = RerankDocuments(required=True, metadata={
        "type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "object", "properties": {
            "text": {"type": "string"}}, "required": ["text"]}]},
        "description": "The documents to rank: at most INFER_MAX_RERANK_DOCUMENTS, each at most "
                       "INFER_MAX_TEXT_LENGTH characters, INFER_MAX_EMBEDDING_CHARS in all."})
    top_n = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1),
                           metadata={"description": "Answer only the n most relevant; left out: all of them."})
    return_documents = fields.Boolean(load_default=False, metadata={
        "description": "Include each document as {\"text\"} in its result."})

    @post_load
    def checked(self, data, **kwargs):
        try:
            check_text(data["query"])
        except ValidationError as exc:
            raise ValidationError({"query": exc.messages}) from None
        check_documents(data["documents"], "documents")
        return data


class RerankDocument(Schema):
    text = fields.String()


class V1RerankResult(Schema):
    index = fields.Integer(metadata={"description": "The document's position in the request's list."})
    relevance_score = fields.Float(metadata={"description": (
        "Its relevance to the query: the cross-encoder's logit through its activation (0 to 1 for most).")})
    document = fields.Nested(RerankDocument, metadata={"description": "With return_documents."})


class V1RerankUsage(Schema):
    total_tokens = fields.Integer(allow_none=True, metadata={"description": (
        "Tokens the model read over all the (query, document) pairs, special tokens included, after its "
        "truncation; null for models that cannot count them (uploaded code).")})


class V1RerankResponse(Schema):
    id = fields.String(metadata={"description": "The request's id (its X-Request-Id), which Cohere's SDK reads."})
    model = fields.String(metadata={"description": "The model as the request named it."})
    results = fields.List(fields.Nested(V1RerankResult), metadata={"description": "Most relevant first."})
    usage = fields.Nested(V1RerankUsage)


@blp.route("")
class Rerank(MethodView):
    # 400 as OpenAI answers a body that does not validate (the service's own routes say 422).
    @blp.arguments(V1RerankBody, error_status_code=400)
    @blp.response(200, V1RerankResponse)
    @documented_errors("400")
    def post(self, body):
        """Rank documents by their relevance to a query (Cohere's and Jina's rerank)"""
        return rerank(body)


def rerank(body: dict) -> dict:
    """The answer to a rerank body the schema loaded (the view's, and a run made
    for an account: api/prediction_dispatch.py)."""
    served, name = resolve_model(TASK, body["model"])
    documents = body["documents"]
    outputs = served.run(TASK, pair_items(body["query"], documents))
    hits = ranked(outputs, documents, body["top_n"], raw=False, with_text=body["return_documents"])
    counted = [output.get("tokens") if isinstance(output, dict) else None for output in outputs]
    return {
        "id": current_request_id.get() or "",
        "model": name,
        "results": [{"index": hit["index"], "relevance_score": hit["score"],
                     **({"document": {"text": hit["text"]}} if "text" in hit else {})} for hit in hits],
        "usage": {"total_tokens": sum(counted) if None not in counted else None},
    }
