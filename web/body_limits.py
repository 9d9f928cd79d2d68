"""Routes that take larger bodies than INFER_MAX_CONTENT_LENGTH: the vectorising
routes, which retrieval frameworks send a corpus's chunks in requests of up to
1,000 texts (their characters are bounded by the schema: INFER_MAX_EMBEDDING_CHARS).

The limit is set for the request before any hook reads its body (the rate limits
read it to weigh a request), so a larger body is read under its route's limit,
and a 413 names the setting that applies.
"""

from flask import request

from core.settings import ENV_PREFIX
from web.settings import current_settings

# URL rule -> the setting (INFER_<name>) of its largest body.
LARGER_BODIES = {
    "/text-vectorisation": "MAX_EMBEDDING_BODY_BYTES",
    "/v1/embeddings": "MAX_EMBEDDING_BODY_BYTES",
    # Up to INFER_MAX_RERANK_DOCUMENTS passages, as many characters in all as a vectorising request.
    "/rerank": "MAX_EMBEDDING_BODY_BYTES",
    "/v1/rerank": "MAX_EMBEDDING_BODY_BYTES",
}


def allow_larger_bodies():
    """before_request, first of all: the route's own body limit, if it has one."""
    rule = request.url_rule
    setting = LARGER_BODIES.get(rule.rule) if rule is not None and request.method == "POST" else None
    if setting is not None:
        request.max_content_length = getattr(current_settings(), setting.lower())
        request.body_limit_setting = ENV_PREFIX + setting


def init_app(app) -> None:
    app.before_request(allow_larger_bodies)
