"""POST /rerank: documents ordered by their relevance to a query, scored by a cross-encoder.

The request is text-embeddings-inference's (`query`, `texts`, `raw_scores`,
`return_text`), also taking infinity's names for the same things (`documents`,
`return_documents`) and its `top_n`; the answer is TEI's list,
`[{"index", "score", "text"?}]`, most relevant first, which is what clients of
a /rerank route read. /v1/rerank (openai_api/rerank.py) answers the same scores
in Cohere's and Jina's shape.

Each (query, document) pair is one batch item; a request of more documents than
a batch runs in parts that take turns with other accounts' requests, as a large
/text-vectorisation request does. A score is the model's logit through its own
activation (a sigmoid for most cross-encoders), as CrossEncoder.predict gives
it; `raw_scores` answers the logit itself.
"""

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from model_registry.catalogue import CROSS_ENCODER
from trainers.cross_encoder import CrossEncoderTrainer

from .answers import SAMPLE_TEXT
from .common import ENV_PREFIX, StrictSchema, check_text, check_total_characters, limit_setting, model_field
from .spec import TaskSpec, register

TASK = "rerank"

EMPTY_QUERY = "The query is empty: send the text to rank the documents against."


def check_documents(values, field_name: str) -> list[str]:
    """A non-empty list of texts, within INFER_MAX_RERANK_DOCUMENTS, each within the text
    length limit, all within the characters a vectorising request may carry."""
    if not isinstance(values, list) or not values:
        raise ValidationError({field_name: ["Send a non-empty list of texts to rank."]})
    most = limit_setting("MAX_RERANK_DOCUMENTS")
    if len(values) > most:
        raise ValidationError({field_name: [f"At most {most} documents per request ({ENV_PREFIX}MAX_RERANK_DOCUMENTS); "
                                            f"this one has {len(values)}: send them in several requests."]})
    errors = {}
    for index, value in enumerate(values):
        try:
            check_text(value)
        except ValidationError as exc:
            errors[index] = exc.messages
    if errors:
        raise ValidationError({field_name: errors})
    try:
        check_total_characters(values)
    except ValidationError as exc:
        raise ValidationError({field_name: exc.messages}) from None
    return values


def pair_items(query: str, documents: list[str]) -> list[dict]:
    """One batch item per document: the pair its model scores."""
    return [{"query": query, "document": document} for document in documents]


def score_of(output) -> tuple[float, float]:
    """(score, raw score) of a model's output for one pair: the cross-encoder loader's
    {"score", "raw_score"}, or the number uploaded code answers (both at once)."""
    if isinstance(output, dict):
        return float(output["score"]), float(output.get("raw_score", output["score"]))
    return float(output), float(output)


def ranked(outputs: list, documents: list[str], top_n: int | None, raw: bool, with_text: bool) -> list[dict]:
    """[{"index", "score", "text"?}], most relevant first (ties in the documents' order), cut at top_n."""
    hits = [{"index": index, "score": score_of(output)[1 if raw else 0]} for index, output in enumerate(outputs)]
    hits.sort(key=lambda hit: -hit["score"])  # stable: equal scores keep the documents' order
    hits = hits[:top_n] if top_n else hits
    if with_text:
        for hit in hits:
            hit["text"] = documents[hit["index"]]
    return hits


def pair_answer(item, output) -> str | None:
    ok = isinstance(output, (int, float)) or (
        isinstance(output, dict) and isinstance(output.get("score"), (int, float)))
    return None if ok else "should return a number (the relevance score of the document to the query)"


class QueryText(fields.Raw):
    """The query, checked with the documents (post_load) so that every message names its field."""

    input_kind = "text"  # what a form or a query string makes of it (the playground, prediction URLs)


class DocumentLines(fields.Raw):
    """A list of documents, checked in post_load (check_documents)."""

    input_kind = "lines"  # one document per line of a form, or per repeated query parameter


class RerankBody(StrictSchema):
    query = QueryText(required=True, metadata={"type": "string", "description": "The text to rank the documents "
                                                "against (a search query, a question)."})
    texts = DocumentLines(metadata={"type": "array", "items": {"type": "string"}, "description": (
        "The documents to rank (text-embeddings-inference's name): at most INFER_MAX_RERANK_DOCUMENTS, each at "
        "most INFER_MAX_TEXT_LENGTH characters, INFER_MAX_EMBEDDING_CHARS in all.")})
    documents = DocumentLines(metadata={"type": "array", "items": {"type": "string"},
                                     "description": "The same as texts (infinity's name): send one of the two."})
    top_n = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1),
                           metadata={"description": "Answer only the n most relevant; left out: all of them."})
    return_text = fields.Boolean(load_default=False, metadata={"description": "Include each document's text."})
    return_documents = fields.Boolean(load_default=False, metadata={"description": "The same as return_text."})
    raw_scores = fields.Boolean(load_default=False, metadata={"description": (
        "Answer the model's raw logits instead of its scores (the logit through the model's activation, "
        "a sigmoid from 0 to 1 for most cross-encoders, as CrossEncoder.predict gives them).")})
    truncate = fields.Boolean(load_default=True, validate=validate.Equal(True, error=(
        "Only true here: a pair longer than the model reads is always cut to fit (the longer text first).")),
        metadata={"description": "Accepted for text-embeddings-inference's clients: pairs are always truncated."})
    model = model_field("english (default): an English cross-encoder trained on MS MARCO passages; or your own "
                        "uploaded or trained model that declares rerank.")

    @validates_schema
    def one_list(self, data, **kwargs):
        if ("texts" in data) == ("documents" in data):
            raise ValidationError("Send the documents to rank as texts or as documents (one of the two).",
                                  field_name="texts")

    @post_load
    def to_pairs(self, data, **kwargs):
        query = data["query"]
        try:
            check_text(query, EMPTY_QUERY)
        except ValidationError as exc:
            raise ValidationError({"query": exc.messages}) from None
        field_name = "texts" if "texts" in data else "documents"
        documents = check_documents(data[field_name], field_name)
        return {"query": query, "documents": documents, "top_n": data["top_n"], "raw_scores": data["raw_scores"],
                "return_text": data["return_text"] or data["return_documents"], "model": data["model"]}


class RerankHit(StrictSchema):
    """One document of the answer; the answer is a list of them (many=True unless told otherwise)."""

    index = fields.Integer(metadata={"description": "The document's position in the request's list."})
    score = fields.Float(metadata={"description": "Its relevance to the query (higher: more relevant)."})
    text = fields.String(metadata={"description": "The document, with return_text or return_documents."})

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("many", True)
        super().__init__(*args, **kwargs)


def finish(outputs: list, body: dict) -> list[dict]:
    return ranked(outputs, body["documents"], body["top_n"], body["raw_scores"], body["return_text"])


SPEC = register(TaskSpec(
    TASK, "/rerank", "Documents ranked by their relevance to a query (a cross-encoder).",
    "Rank documents by their relevance to a query",
    RerankBody, RerankHit, response_keys=("results",),
    sample=lambda: {"query": "What checks the model?", "document": SAMPLE_TEXT},
    items=lambda body: (pair_items(body["query"], body["documents"]), True),
    finish=finish, answer_body=lambda outputs, is_batch: outputs, check_answer=pair_answer,
    hf_loader=CROSS_ENCODER, trainer=CrossEncoderTrainer,
))
