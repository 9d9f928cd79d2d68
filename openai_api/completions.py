"""POST /v1/chat/completions and POST /v1/completions on text-generation models.

Chat messages are rendered with the model's own chat template; prompts are
tokenized here, in the request, so that usage counts and the context check are
exact and a prompt that cannot fit is refused before it queues. Generation runs
through the model's batcher (model_registry/loaders/completion.py), streamed
or not, and stops at its next token once nobody waits for it: its client has
gone (a non-streamed request watches its connection, web/client_gone.py; a
stream notices at its next write) or REQUEST_TIMEOUT_S passed since its submit
(504, or an error event in a stream). The tokens every generation produced are
counted by finish reason (infer_generated_tokens_total), a stopped one's too.
"""

import time
import uuid

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate, validates

from core.errors import ApiError, BadRequest
from model_registry.loaders import completion, prompt_scoring
from model_registry.loaders.completion import TokenStream
from model_registry.served_model import Capability
from tasks.common import StrictSchema, check_batch, check_text, limit_setting
from tasks.text_generation import TASK
from web import metrics
from web.blueprint import Blueprint
from web.client_gone import new_control, run_watched
from web.errors import ErrorDetails
from web.token_estimates import COMPLETIONS_DEFAULT_MAX_TOKENS

from .common import resolve_model
from .errors import documented_errors, openai_format
from .sampling import SamplingBody, completion_request, max_new_tokens, only_default
from .sse import ChunkShape, event_stream

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}

blp = Blueprint("openai-completions", __name__, url_prefix="/v1",
                description="OpenAI-compatible text generation (chat and completions).")


def _engine(served, name: str, chat: bool):
    if Capability.COMPLETION not in served.capabilities:
        raise BadRequest(
            f"Model {name!r} cannot be used on the /v1 generation routes (only decoder-only language models "
            "loaded by the service can; uploaded code and encoder-decoder models cannot). Use POST /text-generation.",
            errors={"model": ["Not a decoder-only language model."]}, param="model")
    engine = served.completion
    if chat and not engine.runs_chat_template:
        raise BadRequest(
            f"Model {name!r} is an uploaded model: its chat template is code, and the service runs uploaded code "
            "only in its sandbox. Render the conversation yourself and send it to POST /v1/completions.",
            errors={"model": ["Uploaded models take prompts on /v1/completions."]}, param="model")
    if chat and not engine.has_chat_template:
        raise BadRequest(
            f"Model {name!r} has no chat template: send a plain prompt to POST /v1/completions instead.",
            errors={"model": ["No chat template."]}, param="model")
    return engine


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _include_usage(body: dict) -> bool:
    return bool((body["stream_options"] or {}).get("include_usage"))


def _total_usage(results) -> dict:
    return _usage(sum(result.prompt_tokens for result in results),
                  sum(choice.completion_tokens for result in results for choice in result.choices))


def _count_generated(model_key: str, results) -> None:
    for result in results:
        for choice in result.choices:
            metrics.on_generation(model_key, choice.finish_reason, choice.completion_tokens)


def _error_body(exc: ApiError) -> dict:
    """An error in a stream's last event, in OpenAI's shape (the SDK raises it)."""
    return openai_format(ErrorDetails(exc.status, exc.message, exc.errors, exc.reason, exc.param))[1]


def _generate(served, requests: list, shape: ChunkShape, stream: TokenStream | None, include_usage: bool):
    """Run the requests: their Completions in order, or a streaming response.

    All of them share one GenerationControl: the deadline from now, and the flag
    that stops their rows when the client has gone or the wait ended. Their
    tokens are counted when their pass ends, also after a 504 or a gone client."""
    control = new_control(served.batch_settings.timeout_s)
    for request in requests:
        request.control = control

    def count_generated(done):
        if not done.cancelled() and not done.exception():
            _count_generated(served.key, done.result())

    if stream is None:
        return run_watched(served, completion.RUNNER, requests, control, on_done=count_generated)
    future = served.run_nowait(completion.RUNNER, requests)
    future.add_done_callback(count_generated)
    return event_stream(future, stream, shape, include_usage, served.batch_settings.timeout_s, _error_body, control)


class Usage(Schema):
    prompt_tokens = fields.Integer(metadata={"description": "Tokens of the prompt(s), as the model's tokenizer counts."})
    completion_tokens = fields.Integer(metadata={"description": "Tokens generated, end-of-text tokens included."})
    total_tokens = fields.Integer()


# ---- /v1/chat/completions ------------------------------------------------------


class ContentPart(StrictSchema):
    type = fields.String(required=True, validate=validate.Equal("text", error=(
        "Only text parts are supported: this service's chat models read text.")))
    text = fields.String(required=True)


class ContentField(fields.Field):
    """A string, or a list of text parts (joined), as OpenAI accepts."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return check_text(value)
        if isinstance(value, list):
            parts = ContentPart(many=True).load(value)
            return check_text("".join(part["text"] for part in parts))
        raise ValidationError("Send the content as a string or a list of text parts.")


class Message(StrictSchema):
    role = fields.String(required=True, validate=validate.OneOf(list(ROLES), error=(
        "Roles are system, developer, user and assistant (tools and functions are not supported).")))
    content = ContentField(required=True, metadata={"type": "string"})
    name = fields.String(load_default=None, allow_none=True, metadata={"description": "Accepted and ignored."})


class ChatCompletionBody(SamplingBody):
    messages = fields.List(fields.Nested(Message), required=True, metadata={
        "description": "The conversation; rendered with the model's own chat template (at most INFER_MAX_BATCH_SIZE)."})
    max_completion_tokens = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1),
                                           metadata={"description": "Newer name of max_tokens."})
    logprobs = fields.Boolean(load_default=None, allow_none=True, validate=only_default(False, "logprobs"),
                              metadata={"description": "Only false (not supported)."})
    top_logprobs = fields.Integer(load_default=None, allow_none=True, validate=only_default(0, "top_logprobs"),
                                  metadata={"description": "Only 0 (not supported)."})
    response_format = fields.Dict(load_default=None, allow_none=True, metadata={
        "description": 'Only {"type": "text"}: structured output is not supported.'})
    tools = fields.List(fields.Dict(), load_default=None, allow_none=True, metadata={
        "description": "Only empty: tool calls are not supported."})
    tool_choice = fields.Raw(load_default=None, allow_none=True, metadata={"description": "Only none/null."})
    functions = fields.List(fields.Dict(), load_default=None, allow_none=True, metadata={"description": "Only empty."})
    function_call = fields.Raw(load_default=None, allow_none=True, metadata={"description": "Only none/null."})
    parallel_tool_calls = fields.Boolean(load_default=None, allow_none=True, metadata={"description": "Ignored."})
    store = fields.Boolean(load_default=None, allow_none=True, metadata={"description": "Ignored: nothing is stored."})
    metadata_ = fields.Dict(data_key="metadata", load_default=None, allow_none=True,
                            metadata={"description": "Ignored."})
    service_tier = fields.String(load_default=None, allow_none=True, metadata={"description": "Ignored."})

    @validates("messages")
    def some_messages(self, messages, **kwargs):
        check_batch(messages, "messages")

    @validates("response_format")
    def text_only(self, value, **kwargs):
        if value not in (None, {"type": "text"}):
            raise ValidationError('Only {"type": "text"}: structured (JSON) output is not supported.')

    @validates("tools")
    def no_tools(self, value, **kwargs):
        if value:
            raise ValidationError("Tool calls are not supported by this service.")

    @validates("functions")
    def no_functions(self, value, **kwargs):
        if value:
            raise ValidationError("Function calls are not supported by this service.")

    @validates("tool_choice")
    def no_tool_choice(self, value, **kwargs):
        if value not in (None, "none"):
            raise ValidationError("Tool calls are not supported by this service.")

    @validates("function_call")
    def no_function_call(self, value, **kwargs):
        if value not in (None, "none"):
            raise ValidationError("Function calls are not supported by this service.")


class Chunks(ChunkShape):
    """What both routes' chunks carry: the reply's id, object, time and model, a
    null usage on each chunk when the last one will carry it, and that last one."""

    object_name = ""

    def __init__(self, reply_id: str, created: int, model: str, include_usage: bool):
        self.base = {"id": reply_id, "object": self.object_name, "created": created, "model": model}
        if include_usage:
            self.base["usage"] = None

    def usage(self, results):
        return {**self.base, "choices": [], "usage": _total_usage(results)}


class ChatChunks(Chunks):
    object_name = "chat.completion.chunk"

    def __init__(self, reply_id: str, created: int, model: str, choices: int, include_usage: bool):
        super().__init__(reply_id, created, model, include_usage)
        self.choices = choices

    def _chunk(self, choice: dict) -> dict:
        return {**self.base, "choices": [{"logprobs": None, "finish_reason": None, **choice}]}

    def opening(self):
        return [self._chunk({"index": i, "delta": {"role": "assistant", "content": ""}}) for i in range(self.choices)]

    def text(self, index, text):
        return self._chunk({"index": index, "delta": {"content": text}})

    def end(self, index, finish_reason):
        return self._chunk({"index": index, "delta": {}, "finish_reason": finish_reason})


class ReplyMessage(Schema):
    role = fields.String(metadata={"description": "Always assistant."})
    content = fields.String()


class ChatChoice(Schema):
    index = fields.Integer()
    message = fields.Nested(ReplyMessage)
    logprobs = fields.Raw(allow_none=True, metadata={"description": "Always null."})
    finish_reason = fields.String(metadata={"description": "stop (end of text or a stop string) or length."})


class Reply(Schema):
    """What both routes' answers carry around their choices."""

    id = fields.String()
    object = fields.String()
    created = fields.Integer()
    model = fields.String(metadata={"description": "The model as the request named it."})
    usage = fields.Nested(Usage)


class ChatCompletion(Reply):
    object = fields.String(metadata={"description": "chat.completion"})
    choices = fields.List(fields.Nested(ChatChoice))


def answer_doc(schema) -> dict:
    """The 200 answer: JSON, or server-sent events with stream: true."""
    events = {"type": "string", "description": (
        "With stream: true: OpenAI's chunks as `data: {...}` lines, then `data: [DONE]`.")}
    content = {"application/json": {"schema": schema}, "text/event-stream": {"schema": events}}
    return {"responses": {"200": {"description": "OK", "content": content}}}


@blp.route("/chat/completions")
class ChatCompletions(MethodView):
    @blp.arguments(ChatCompletionBody, error_status_code=400)
    @blp.response(200, ChatCompletion)
    @blp.doc(**answer_doc(ChatCompletion))
    @documented_errors("400")
    def post(self, body):
        """Chat with a text-generation model (OpenAI-compatible)"""
        return chat_completion(body)


def chat_completion(body: dict):
    """The answer to a chat body the schema loaded: a JSON object, or the stream's response (the view's,
    and a run made for an account: api/prediction_dispatch.py)."""
    if body["max_tokens"] is None:
        body["max_tokens"] = body["max_completion_tokens"]
    served, name = resolve_model(TASK, body["model"])
    engine = _engine(served, name, chat=True)
    messages = [{"role": ROLES[m["role"]], "content": m["content"]} for m in body["messages"]]
    try:
        prompt_ids = engine.encode_chat(messages)
    except Exception as exc:  # a template may refuse an order of roles (raise_exception in Jinja)
        raise BadRequest(f"The model's chat template refused these messages: {exc}",
                         errors={"messages": [str(exc)]}, param="messages") from None
    max_tokens = max_new_tokens(body, len(prompt_ids), engine.context_length, None, "messages")
    reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    stream = TokenStream() if body["stream"] else None
    request = completion_request(body, prompt_ids, max_tokens, stream)
    include_usage = _include_usage(body)
    shape = ChatChunks(reply_id, created, body["model"], request.n, include_usage)
    answer = _generate(served, [request], shape, stream, include_usage)
    if stream is not None:
        return answer
    [result] = answer
    return {
        "id": reply_id, "object": "chat.completion", "created": created, "model": body["model"],
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": choice.text}, "logprobs": None,
             "finish_reason": choice.finish_reason}
            for i, choice in enumerate(result.choices)
        ],
        "usage": _total_usage([result]),
    }


# ---- /v1/completions -------------------------------------------------------------


def _token_ids(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, int) and not isinstance(item, bool) for item in value)


class PromptField(fields.Field):
    """A string or a list of strings; or token ids (a list of them, or a list of such
    lists), which only a prompt scored takes (text_completion refuses them otherwise)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return [check_text(value)]
        if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
            check_batch(value, "prompts")
            return [check_text(item) for item in value]
        if _token_ids(value):
            return [list(value)]
        if isinstance(value, list) and value and all(_token_ids(item) for item in value):
            check_batch(value, "prompts")
            return [list(item) for item in value]
        raise ValidationError("Send a string, or a list of strings for several prompts.")


class CompletionBody(SamplingBody):
    prompt = PromptField(required=True, metadata={
        "description": "The text, or several. Token ids (the model's own tokenizer's) only with logprobs, as "
                       "lm-eval-harness sends them.",
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1},
                  {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                  {"type": "array", "items": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                   "minItems": 1}]})
    echo = fields.Boolean(load_default=False, allow_none=True, metadata={
        "description": "Put the prompt before each choice's text."})
    suffix = fields.String(load_default=None, allow_none=True, validate=only_default("", "suffix"),
                           metadata={"description": "Only empty (not supported)."})
    best_of = fields.Integer(load_default=None, allow_none=True, metadata={"description": "Only equal to n."})
    max_tokens = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0), metadata={
        "description": "Most tokens to generate per choice (at most INFER_GEN_MAX_NEW_TOKENS); 0, with echo, "
                       "answers the prompt alone (scored with logprobs)."})
    logprobs = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=0, max=prompt_scoring.MAX_TOP_LOGPROBS),
        metadata={"description": "The prompt's token log-probabilities, with this many likeliest alternatives per "
                                 "token (0 to 5): only with echo true and max_tokens 0 (the prompt scored, nothing "
                                 "generated), or max_tokens 1 at temperature 0 (and the greedy next token), as "
                                 "lm-eval-harness's loglikelihood tasks ask."})


class CompletionChunks(Chunks):
    object_name = "text_completion"

    def __init__(self, reply_id: str, created: int, model: str, include_usage: bool, prefixes: list[str]):
        super().__init__(reply_id, created, model, include_usage)
        self.prefixes = prefixes  # echoed prompts, by choice index

    def _chunk(self, index: int, text: str, finish_reason=None) -> dict:
        return {**self.base, "choices": [{"text": text, "index": index, "logprobs": None,
                                          "finish_reason": finish_reason}]}

    def opening(self):
        return [self._chunk(i, prefix) for i, prefix in enumerate(self.prefixes) if prefix]

    def text(self, index, text):
        return self._chunk(index, text)

    def end(self, index, finish_reason):
        return self._chunk(index, "", finish_reason)


class PromptLogprobs(Schema):
    tokens = fields.List(fields.String(), metadata={"description": "The prompt's tokens, each decoded alone."})
    token_logprobs = fields.List(fields.Float(allow_none=True), metadata={
        "description": "Each token's natural-log probability given the tokens before it; null for the first."})
    top_logprobs = fields.List(fields.Dict(keys=fields.String(), values=fields.Float()), allow_none=True, metadata={
        "description": "Per token, its `logprobs` likeliest alternatives {token: log-probability} (null for the "
                       "first token); null when logprobs is 0."})
    text_offset = fields.List(fields.Integer(), metadata={
        "description": "Where each token starts in the text (a token runs from the end of the one before it)."})


class TextChoice(Schema):
    text = fields.String()
    index = fields.Integer()
    logprobs = fields.Nested(PromptLogprobs, allow_none=True, metadata={
        "description": "Null, except with echo and logprobs: the prompt's tokens scored (and, with max_tokens 1, "
                       "the greedy next token)."})
    finish_reason = fields.String(metadata={"description": "stop (end of text or a stop string) or length."})


class TextCompletion(Reply):
    object = fields.String(metadata={"description": "text_completion"})
    choices = fields.List(fields.Nested(TextChoice))


@blp.route("/completions")
class Completions(MethodView):
    @blp.arguments(CompletionBody, error_status_code=400)
    @blp.response(200, TextCompletion)
    @blp.doc(**answer_doc(TextCompletion))
    @documented_errors("400")
    def post(self, body):
        """Continue a prompt with a text-generation model (OpenAI-compatible)"""
        return text_completion(body)


def text_completion(body: dict):
    """The answer to a completions body the schema loaded: a JSON object, or the stream's response (the view's,
    and a run made for an account: api/prediction_dispatch.py)."""
    n = body["n"] or 1
    if body["best_of"] not in (None, n):
        raise BadRequest("best_of is supported only equal to n.", errors={"best_of": ["Must equal n."]},
                         param="best_of")
    prompts = body["prompt"]
    most = limit_setting("MAX_BATCH_SIZE")
    if len(prompts) * n > most:
        raise BadRequest(f"{len(prompts)} prompts x {n} choices is more than {most} (INFER_MAX_BATCH_SIZE).",
                         errors={"n": ["Too many choices in all."]}, param="n")
    if body["max_tokens"] == 0 or body["logprobs"] is not None:
        return scored_prompts(body, prompts, n)
    if any(isinstance(prompt, list) for prompt in prompts):
        raise BadRequest("Token arrays are accepted only to score a prompt (echo, logprobs and max_tokens 0, or 1 "
                         "at temperature 0): token ids differ between models. Send the text.",
                         errors={"prompt": ["Token arrays only with logprobs."]}, param="prompt")
    served, name = resolve_model(TASK, body["model"])
    engine = _engine(served, name, chat=False)
    stream = TokenStream() if body["stream"] else None
    requests = []
    for position, prompt in enumerate(prompts):
        prompt_ids = engine.encode(prompt)
        max_tokens = max_new_tokens(body, len(prompt_ids), engine.context_length,
                                    COMPLETIONS_DEFAULT_MAX_TOKENS, "prompt")
        request = completion_request(body, prompt_ids, max_tokens, stream)
        request.first_choice = position * n
        requests.append(request)
    echoed = [prompt if body["echo"] else "" for prompt in prompts for _ in range(n)]
    reply_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    include_usage = _include_usage(body)
    shape = CompletionChunks(reply_id, created, body["model"], include_usage, echoed)
    answer = _generate(served, requests, shape, stream, include_usage)
    if stream is not None:
        return answer
    choices = [choice for result in answer for choice in result.choices]
    return {
        "id": reply_id, "object": "text_completion", "created": created, "model": body["model"],
        "choices": [
            {"text": echoed[i] + choice.text, "index": i, "logprobs": None, "finish_reason": choice.finish_reason}
            for i, choice in enumerate(choices)
        ],
        "usage": _total_usage(answer),
    }


# ---- /v1/completions scoring a prompt (echo, logprobs, max_tokens 0 or 1) -----------------------

SCORING_ONLY = ("logprobs are answered for the prompt only: set echo true and max_tokens 0 (nothing generated), "
                "or max_tokens 1 with temperature 0 (the greedy next token too)")


def _check_scoring(body: dict) -> None:
    """echo with max_tokens 0 answers the prompt alone; logprobs come only with it, or with
    one greedy token more (what lm-eval-harness asks). Anything else that names them would
    be answered as if a generation had been scored: refused."""
    logprobs, max_tokens = body["logprobs"], body["max_tokens"]
    if logprobs is not None and max_tokens not in (0, 1):
        raise BadRequest(f"{SCORING_ONLY}; max_tokens was {max_tokens}.",
                         errors={"max_tokens": ["Must be 0 (or 1) with logprobs."]}, param="max_tokens")
    if max_tokens == 1 and body["temperature"] != 0:
        raise BadRequest(f"{SCORING_ONLY}; temperature was {body['temperature']}.",
                         errors={"temperature": ["Must be 0 with logprobs and max_tokens 1."]}, param="temperature")
    if not body["echo"]:
        raise BadRequest(f"{SCORING_ONLY}; echo was false.", errors={"echo": ["Must be true with logprobs or "
                                                                            "max_tokens 0."]}, param="echo")
    if body["stream"]:
        raise BadRequest(f"{SCORING_ONLY}, and not streamed: the answer is ready at once.",
                         errors={"stream": ["Must be false with logprobs or max_tokens 0."]}, param="stream")


def _check_context(engine, prompt_tokens: int, following: bool) -> None:
    if prompt_tokens + following > engine.context_length or (following and not prompt_tokens):
        raise BadRequest(
            f"This model's context is {engine.context_length} tokens; the prompt takes {prompt_tokens}"
            f"{' and 1 more was asked for' if following else ''}. Shorten the prompt.",
            errors={"prompt": ["Too many tokens for the model's context."]},
            reason="context_length_exceeded", param="prompt")


def _scored_text(engine, prompt, following: bool) -> tuple[str, list[int], list[int]]:
    """(the prompt's text, its token ids, where each starts in the text), from a text or from
    ids; a 400 when they do not fit the model's context, before any work that grows with them."""
    if isinstance(prompt, str):
        ids, offsets = engine.encode_with_offsets(prompt, engine.context_length)
        _check_context(engine, len(ids), following)
        return prompt, ids, offsets
    _check_context(engine, len(prompt), following)
    size = engine.vocabulary_size
    if any(token < 0 or token >= size for token in prompt):
        raise BadRequest(f"Token ids of this model run from 0 to {size - 1}; the prompt has "
                         f"{next(token for token in prompt if token < 0 or token >= size)}.",
                         errors={"prompt": ["A token id out of range."]}, param="prompt")
    text, offsets = engine.text_with_offsets(prompt)
    return text, list(prompt), offsets


def scored_prompts(body: dict, prompts: list, n: int) -> dict:
    """The prompts echoed, with their tokens' log-probabilities when logprobs is set (and the
    greedy next token with max_tokens 1): one forward pass each through the model's scoring
    runner (its batcher, so its fair share and limits); n choices of a prompt are the same
    answer repeated."""
    _check_scoring(body)
    served, name = resolve_model(TASK, body["model"])
    engine = _engine(served, name, chat=False)
    following = body["max_tokens"] == 1
    scored = [_scored_text(engine, prompt, following) for prompt in prompts]
    top = body["logprobs"]
    choices = [{"text": text, "logprobs": None, "finish_reason": "length"} for text, _ids, _offsets in scored]
    if top is not None:
        control = new_control(served.batch_settings.timeout_s)
        requests = [prompt_scoring.ScoringRequest(ids, top, following, control) for _text, ids, _offsets in scored]
        scores = run_watched(served, prompt_scoring.RUNNER, requests, control)
        choices = [_scored_choice(engine, *prompt, score, top) for prompt, score in zip(scored, scores)]
    prompt_tokens = sum(len(ids) for _text, ids, _offsets in scored)
    return {
        "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
        "model": body["model"],
        "choices": [{**choices[i // n], "index": i} for i in range(len(prompts) * n)],
        "usage": _usage(prompt_tokens, len(prompts) * n if following else 0),
    }


def _scored_choice(engine, text: str, ids: list[int], offsets: list[int], score, top: int) -> dict:
    """A choice with OpenAI's legacy logprobs object: the prompt's tokens, and the next one if asked."""
    tokens = engine.token_texts(ids)
    token_logprobs, alternatives = list(score.token_logprobs), list(score.top)
    offsets, finish_reason = list(offsets), "length"
    if score.next is not None:
        token, logprob, next_alternatives = score.next
        offsets.append(len(text))
        tokens += engine.token_texts([token])
        token_logprobs.append(logprob)
        alternatives.append(next_alternatives)
        if token in engine.eos_ids:
            finish_reason = "stop"
        else:
            text += engine.decode([token])
    top_logprobs = None
    if top:
        top_logprobs = [None if best is None else _by_text(engine, best) for best in alternatives]
    return {"text": text, "finish_reason": finish_reason,
            "logprobs": {"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
                         "text_offset": offsets}}


def _by_text(engine, alternatives: list[tuple[int, float]]) -> dict:
    """{token text: log-probability}, likeliest first; of two tokens that read the same, the likelier."""
    texts = engine.token_texts([token for token, _logprob in alternatives])
    by_text: dict = {}
    for text, (_token, logprob) in zip(texts, alternatives):
        by_text.setdefault(text, logprob)
    return by_text
