"""What /v1/completions and /v1/chat/completions share: the sampling parameters
OpenAI's clients send, their limits, and the refusal of the ones this service
cannot honour.

OpenAI answers an argument it does not know with a 400; so do we (the strict
schema). Arguments that exist in OpenAI's API but change nothing here are
accepted and ignored (`user`, `store`, `metadata`, `service_tier`,
`parallel_tool_calls`); arguments whose non-default values we cannot honour
(penalties, logit_bias, logprobs, tools, JSON output) are accepted only at
their default, and a 400 names them otherwise, rather than answering as if
they had been applied.
"""

from marshmallow import ValidationError, fields, validate, validates_schema

from core.errors import BadRequest
from model_registry.loaders.completion import CompletionRequest, TokenStream
from tasks.common import StrictSchema, check_at_most, limit_setting

MAX_STOP_STRINGS = 4  # OpenAI's own limit


class StopField(fields.Field):
    """A string or a list of up to four strings; null means none."""

    def __init__(self, **kwargs):
        super().__init__(load_default=None, allow_none=True, metadata={
            "description": f"Up to {MAX_STOP_STRINGS} strings; the text ends before the first one generated.",
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOP_STRINGS}],
        }, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(stop, str) for stop in stops):
            raise ValidationError("Send a string or a list of strings.")
        if len(stops) > MAX_STOP_STRINGS:
            raise ValidationError(f"At most {MAX_STOP_STRINGS} stop strings; got {len(stops)}.")
        if any(not stop for stop in stops):
            raise ValidationError("A stop string must not be empty.")
        return tuple(stops)


class StreamOptions(StrictSchema):
    include_usage = fields.Boolean(load_default=False, metadata={
        "description": "Send one more chunk before [DONE] with the usage of the whole request."})


def only_default(default, what: str):
    """A validator for arguments that are accepted only at OpenAI's default."""
    def check(value):
        if value not in (None, default):
            raise ValidationError(f"{what} is not supported by this service; leave it out (or send {default!r}).")
    return check


class SamplingBody(StrictSchema):
    model = fields.String(required=True, metadata={
        "description": "A text-generation model: a catalogue key (GET /v1/models), a Backprop name, or your own model."})
    max_tokens = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1), metadata={
        "description": "Most tokens to generate per choice (at most INFER_GEN_MAX_NEW_TOKENS)."})
    temperature = fields.Float(load_default=1.0, allow_none=True, validate=validate.Range(min=0, max=2), metadata={
        "description": "0 is greedy and deterministic; higher is more random."})
    top_p = fields.Float(load_default=1.0, allow_none=True, validate=validate.Range(min=0, max=1, min_inclusive=False),
                         metadata={"description": "Sample among the likeliest tokens whose probabilities add up to p."})
    n = fields.Integer(load_default=1, allow_none=True, validate=validate.Range(min=1), metadata={
        "description": "Choices per prompt (at most INFER_GEN_MAX_GENERATIONS)."})
    stop = StopField()
    seed = fields.Integer(load_default=None, allow_none=True, metadata={
        "description": "Makes sampling repeatable: a seeded request draws from its own random generator, so its "
                       "output does not depend on the requests it is batched with."})
    stream = fields.Boolean(load_default=False, allow_none=True, metadata={
        "description": "Answer with server-sent events, one chunk per piece of text, ending with data: [DONE]."})
    stream_options = fields.Nested(StreamOptions, load_default=None, allow_none=True)
    user = fields.String(load_default=None, allow_none=True, metadata={"description": "Accepted and ignored."})
    frequency_penalty = fields.Float(load_default=None, allow_none=True,
                                     validate=only_default(0, "frequency_penalty"),
                                     metadata={"description": "Only 0 (not supported)."})
    presence_penalty = fields.Float(load_default=None, allow_none=True, validate=only_default(0, "presence_penalty"),
                                    metadata={"description": "Only 0 (not supported)."})
    logit_bias = fields.Dict(load_default=None, allow_none=True, validate=only_default({}, "logit_bias"),
                             metadata={"description": "Only empty (not supported)."})

    @validates_schema
    def within_limits(self, data, **kwargs):
        checks = (("max_tokens", "GEN_MAX_NEW_TOKENS"), ("max_completion_tokens", "GEN_MAX_NEW_TOKENS"),
                  ("n", "GEN_MAX_GENERATIONS"))
        for name, setting in checks:
            if data.get(name) is not None:
                check_at_most(setting, name, data[name])


def max_new_tokens(body: dict, prompt_tokens: int, context: int, default: int | None, prompt_field: str) -> int:
    """The tokens each choice may take: as asked, else `default` (None: as many as
    fit), never past the model's context. 400 when the prompt leaves no room."""
    room = context - prompt_tokens
    asked = body.get("max_tokens")
    if asked is not None and asked > room or room < 1:
        raise BadRequest(
            f"This model's context is {context} tokens; the prompt takes {prompt_tokens} and "
            f"{asked or 1} more were asked for. Shorten the prompt or lower max_tokens.",
            errors={prompt_field: ["Too many tokens for the model's context."]},
            reason="context_length_exceeded", param=prompt_field,
        )
    if asked is not None:
        return asked
    ceiling = limit_setting("GEN_MAX_NEW_TOKENS")
    return min(room, ceiling, default or ceiling)


def completion_request(body: dict, prompt_ids: list[int], max_tokens: int, stream: TokenStream | None):
    temperature = body["temperature"] if body["temperature"] is not None else 1.0
    return CompletionRequest(
        prompt_ids=prompt_ids,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=body["top_p"] if body["top_p"] is not None else 1.0,
        n=body["n"] or 1,
        stop=body["stop"] or (),
        seed=body["seed"],
        stream=stream,
    )
