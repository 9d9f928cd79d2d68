"""/v1: an OpenAI-compatible API over the service's models, so that OpenAI's SDKs
and the libraries built on them (LangChain, LlamaIndex) work by changing their
base URL. Same keys, same models, same batcher as the service's own routes;
errors in OpenAI's shape."""

from web.errors import register_error_format

from . import batches, completions, embeddings, models, rerank
from .errors import openai_format

PATH_PREFIX = "/v1"

# One module per OpenAI resource, each with its blueprint under PATH_PREFIX.
ROUTES = (models, embeddings, completions, rerank, batches)


def register(api) -> None:
    register_error_format(PATH_PREFIX, openai_format)
    for module in ROUTES:
        api.register_blueprint(module.blp)
