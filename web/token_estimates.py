"""How many generation tokens a request is charged against its account's tokens
per minute (web/rate_limits.py), before any work is done.

OpenAI charges a request when it is admitted: the prompt's tokens, estimated
from its characters, plus the most it may generate (max_tokens x n). So does
this service: a prompt's tokens are its characters / 4 (rounded up; OpenAI's
rule of thumb for English, and no tokenizer need be loaded to admit or refuse a
request), and the output is the request's own bound on new tokens per output
times its outputs per prompt, with the route's default where it sends none. A
request is charged what it may cost, not what it cost: nothing is given back
when a generation stops early.

The body has not been validated yet: a value of the wrong type counts as its
default, and every figure is capped at its setting's maximum, so a request the
view is about to refuse cannot cost more than the largest valid one.
"""

import math

CHARACTERS_PER_TOKEN = 4
# OpenAI's default max_tokens for /v1/completions (chat has none: as much as fits):
# openai_api answers with it, and a request that leaves it out is charged it.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16


def prompt_tokens(text) -> int:
    """A text's estimated tokens; a list of token ids (a prompt scored on /v1/completions) counts its
    own (as many as the body, bounded by INFER_MAX_CONTENT_LENGTH, can hold)."""
    if isinstance(text, list):
        return len(text)
    return math.ceil(len(text) / CHARACTERS_PER_TOKEN) if isinstance(text, str) else 0


def _count(value, default: int, most: int) -> int:
    """A positive integer field, or its default; at most `most`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        value = default
    return min(value, most)


def _texts(value, most: int) -> list:
    """A string, or a list of strings, as a list (at most `most` of them)."""
    return [value] if isinstance(value, str) else value[:most] if isinstance(value, list) else []


def _message_text(message) -> int:
    """Characters of a chat message's content: a string, or a list of text parts."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(part.get("text") or "") for part in content
                   if isinstance(part, dict) and isinstance(part.get("text"), str))
    return 0


def chat_completion(body: dict, config) -> int:
    """/v1/chat/completions: one prompt (every message), n choices."""
    messages = _texts(body.get("messages"), config.max_batch_size)
    characters = sum(_message_text(message) for message in messages)
    most_new = config.gen_max_new_tokens
    # Left out, a chat may generate as much as fits: charge the ceiling.
    new_tokens = _count(body.get("max_completion_tokens") or body.get("max_tokens"), most_new, most_new)
    choices = _count(body.get("n"), 1, config.max_batch_size)
    return math.ceil(characters / CHARACTERS_PER_TOKEN) + new_tokens * choices


def completion(body: dict, config) -> int:
    """/v1/completions: each prompt, n choices each (a prompt of token ids: its ids)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(item, int) for item in prompt):
        prompt = [prompt]  # one prompt of token ids
    prompts = _texts(prompt, config.max_batch_size)
    most_new = config.gen_max_new_tokens
    new_tokens = _count(body.get("max_tokens"), min(COMPLETIONS_DEFAULT_MAX_TOKENS, most_new), most_new)
    if body.get("max_tokens") == 0 and body.get("echo") is True:  # a prompt scored: nothing is generated
        new_tokens = 0
    choices = _count(body.get("n"), 1, config.max_batch_size)
    return sum(prompt_tokens(prompt) + new_tokens * choices for prompt in prompts)


def text_generation(body: dict, config) -> int:
    """/text-generation: each text, num_generations outputs of max_length tokens each."""
    from model_registry.loaders.generation import DEFAULTS as TEXT_GENERATION_DEFAULTS

    texts = _texts(body.get("text"), config.max_batch_size)
    most_new = config.gen_max_new_tokens
    new_tokens = _count(body.get("max_length"), min(TEXT_GENERATION_DEFAULTS["max_length"], most_new), most_new)
    outputs = _count(body.get("num_generations"), TEXT_GENERATION_DEFAULTS["num_generations"],
                     config.gen_max_generations)
    return sum(prompt_tokens(text) + new_tokens * outputs for text in texts)


# URL rule -> its estimate; the generation routes, and only those, are charged tokens.
ESTIMATE_FOR_ROUTE = {
    "/v1/chat/completions": chat_completion,
    "/v1/completions": completion,
    "/text-generation": text_generation,
}


def generation_tokens(rule: str, body, config) -> int:
    """The tokens a request to this route is charged; 0 for a body that is not a JSON object."""
    estimate = ESTIMATE_FOR_ROUTE.get(rule)
    return estimate(body, config) if estimate is not None and isinstance(body, dict) else 0
