"""Token-level generation for the OpenAI-compatible routes (/v1/completions,
/v1/chat/completions) on decoder-only models.

Where /text-generation answers Backprop's way (the prompt followed by its
continuation, lengths in tokens, beams), these routes need what OpenAI's
clients read: the continuation alone, `stop` strings, `n` choices, the reason
each choice ended, token counts, and the text as it is generated (streaming).

Every choice is one row (a prompt with n choices is n rows). Requests go
through the model's running batch (loaders/continuous: rows join and leave
between decoding steps); CompletionEngine.run, the static path, makes the rows
of a batch one generate() call instead (continuous batching off, or a model
whose cache cannot be batched that way). A Row follows its choice token by
token on both paths (on the static one `_Rows`, a stopping criterion, feeds
them): it decodes the row's tokens, and
ends the row at its end-of-text token, its stop string, its own max_tokens, or
once nobody waits for it: its client has gone away (a stream's write failed,
or a waiting request saw its connection close) or its deadline passed (its
GenerationControl, model_registry/loaders/generation.py); and it hands a
streaming row's new text to its TokenStream. Streamed and non-streamed
choices are built by the same code, so they are the same text.
"""

import functools
import queue
import threading
from dataclasses import dataclass, field

import torch

from . import prompt_scoring
from .common import inference
from .generation import CANCELLED, GenerationControl

# The name of the completion runner in a ServedModel's runners (its own batcher),
# and the task whose models carry it.
RUNNER = "completions"
SERVES = "text-generation"
# The runners the /v1 routes use on a model that serves SERVES: generation, and
# the scoring of prompts (echo with logprobs, prompt_scoring.py).
ROUTE_RUNNERS = (RUNNER, prompt_scoring.RUNNER)

# The most tokens whose offsets in their text are found by decoding every prefix
# (CompletionEngine._offsets): about 130,000 tokens decoded in all.
EXACT_OFFSETS_TOKENS = 512

# What a streamed choice yields that is not text.
END = "end"
# Printed by decode() for a token that ends inside a multi-byte character: its
# text is held back until the rest arrives.
INCOMPLETE = "\ufffd"


class TokenStream:
    """Where a streaming request's choices arrive while the model generates them.

    `events` gets (choice index, text) for new text and (choice index, END,
    finish reason) when a choice ends. `cancel()` (its client went away) ends
    every one of its choices at the next generated token.
    """

    def __init__(self):
        self.events: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass
class CompletionRequest:
    """One prompt, already tokenized, and how to continue it."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Backprop's /text-generation parameters (OpenAI's routes leave them as they are).
    top_k: int = 0
    min_tokens: int = 0
    repetition_penalty: float = 1.0
    stream: TokenStream | None = field(default=None, compare=False)
    # The index of this prompt's first choice in the stream (prompt i of a
    # list, with n choices each, starts at i * n).
    first_choice: int = 0
    # The request's deadline and its stop flag (client gone, wait over); None: neither.
    control: GenerationControl | None = field(default=None, compare=False)

    def stop_reason(self) -> str | None:
        """Why this request's rows must end now, if they must."""
        if self.stream is not None and self.stream.cancelled.is_set():
            return CANCELLED
        return self.control.should_stop() if self.control is not None else None

    def sampling_key(self):
        """Requests that may share one generate() call. Stops and lengths are per
        row; a seeded request runs alone, so its seed decides its output."""
        if self.temperature == 0:
            return ("greedy",)
        return ("sample", self.temperature, self.top_p, id(self) if self.seed is not None else None)


@dataclass
class Choice:
    text: str
    # "stop" (end-of-text or a stop string), "length" (max_tokens), "cancelled"
    # (its client went away) or "deadline" (REQUEST_TIMEOUT_S passed).
    finish_reason: str
    completion_tokens: int
    # The tokens generated, end-of-text included (not part of any answer: tests compare them).
    token_ids: list[int] = field(default_factory=list, compare=False, repr=False)


@dataclass
class Completion:
    prompt_tokens: int
    choices: list[Choice]


class Row:
    """One choice being generated."""

    def __init__(self, decode, eos_ids: set[int], request: CompletionRequest, index: int):
        self.decode = decode
        self.eos_ids = eos_ids
        self.request = request
        self.index = index
        self.tokens: list[int] = []
        self.text = ""
        self.streamed = 0  # characters of text already handed to the stream
        self.finish_reason: str | None = None
        # Set by the continuous scheduler: the row's random generator (None: torch's
        # global one), the queue entry it belongs to, and whether it gave its slot back.
        self.generator = None
        self.entry = None
        self.released = False  # its slot given back

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def add(self, token: int) -> None:
        stopped = self.request.stop_reason()
        if stopped is not None:
            return self._finish(stopped)
        self.tokens.append(token)
        if token in self.eos_ids:
            return self._finish("stop")
        text = self.decode(self.tokens)
        cut = min((i for i in (text.find(s) for s in self.request.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.text = text[:cut]
            return self._finish("stop")
        self.text = text
        if len(self.tokens) >= self.request.max_tokens:
            return self._finish("length")
        self._stream(self._safe_length(text))

    def stop(self, reason: str) -> None:
        """End now, without another token (its request was abandoned or failed)."""
        self._finish(reason)

    def end(self) -> None:
        """generate() returned; a row still open reached the call's length limit."""
        if not self.done:
            self._finish("length")

    def choice(self) -> Choice:
        return Choice(self.text, self.finish_reason, len(self.tokens), list(self.tokens))

    def _safe_length(self, text: str) -> int:
        """How much of the text can be streamed now: not an incomplete character,
        nor the start of what may become a stop string (it would be cut)."""
        safe = len(text.rstrip(INCOMPLETE))
        for stop in self.request.stop:
            for size in range(min(len(stop) - 1, safe), 0, -1):
                if text[safe - size : safe] == stop[:size]:
                    safe -= size
                    break
        return safe

    def _stream(self, upto: int) -> None:
        stream = self.request.stream
        if stream is not None and upto > self.streamed:
            stream.events.put((self.index, self.text[self.streamed : upto]))
            self.streamed = upto

    def _finish(self, reason: str) -> None:
        self.finish_reason = reason
        if self.request.stream is not None:
            if reason in ("stop", "length"):  # not when stopped early: nobody reads it, or an error follows
                self._stream(len(self.text))
            self.request.stream.events.put((self.index, END, reason))


class _Rows:
    """The stopping criterion of one generate() call: feeds each row its newest
    token, and tells generate() which rows are done."""

    def __init__(self, rows: list[Row]):
        self.rows = rows

    def __call__(self, input_ids, scores, **kwargs):
        for row, token in zip(self.rows, input_ids[:, -1].tolist()):
            if not row.done:
                row.add(token)
        return torch.tensor([row.done for row in self.rows], dtype=torch.bool, device=input_ids.device)


class CompletionEngine:
    """A decoder-only model and its tokenizer, seen as OpenAI's routes need them."""

    def __init__(self, model, tokenizer, device: str, context_length: int):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.context_length = context_length
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.eos_ids = {token for token in [*eos, tokenizer.eos_token_id] if token is not None}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        # A chat template is a Jinja program that runs in this process. Jinja's
        # sandbox keeps it from Python's internals but not from looping for
        # hours, so only the templates of the service's own models are run;
        # uploads.serving turns this off for uploaded models.
        self.runs_chat_template = True

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def encode_with_offsets(self, text: str, most: int) -> tuple[list[int], list[int] | None]:
        """The tokens of `text` (as encode()) and where each starts in it, OpenAI's
        text_offset: a token runs from where the one before it ended, so the space
        before a word belongs to the word's token, as OpenAI counts it, whether or not
        the tokenizer trims its offsets; a BOS it adds starts at 0 and is empty.
        Offsets None past `most` tokens (the caller refuses the text): without a
        fast tokenizer's offsets they cost a decode of every prefix."""
        try:
            encoded = self.tokenizer(text, return_offsets_mapping=True)
        except NotImplementedError:  # a slow (Python) tokenizer has no offsets: from the tokens' texts
            ids = self.encode(text)
            if len(ids) > most:
                return ids, None
            return ids, self._offsets(ids, text)
        ids = list(encoded["input_ids"])
        starts, reached = [], 0
        for _start, end in encoded["offset_mapping"]:
            starts.append(reached)
            reached = max(reached, end)
        return ids, starts

    @functools.cached_property
    def vocabulary_size(self) -> int:
        """Token ids run from 0 to this, excluded: the tokenizer's, added tokens included,
        and no more than the model has embeddings for."""
        return min(len(self.tokenizer.get_vocab()), self.model.get_input_embeddings().num_embeddings)

    def text_with_offsets(self, tokens: list[int]) -> tuple[str, list[int]]:
        """The text of token ids (sent as a prompt) and where each token starts in it."""
        text = self.tokenizer.decode(tokens)
        return text, self._offsets(tokens, text)

    def _offsets(self, tokens: list[int], text: str) -> list[int]:
        """Where each token starts in `text`: the sums of the tokens' own texts where they
        add up to the whole text. Otherwise (a tokenizer that decodes a token differently
        alone, a character over two tokens) the length of each prefix decoded, which is
        quadratic in the tokens: only up to EXACT_OFFSETS_TOKENS of them, since it runs in
        the request's thread, outside the model's fair share; past that the sums, kept
        within the text (approximate near such tokens)."""
        pieces = self.token_texts(tokens)
        if "".join(pieces) != text and len(tokens) <= EXACT_OFFSETS_TOKENS:
            return [min(len(self.tokenizer.decode(tokens[:i])), len(text)) for i in range(len(tokens))]
        starts, reached = [], 0
        for piece in pieces:
            starts.append(min(reached, len(text)))
            reached += len(piece)
        return starts

    def encode_chat(self, messages: list[dict]) -> list[int]:
        """The conversation rendered with the model's own chat template, ready for
        the assistant's turn."""
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def token_texts(self, tokens: list[int]) -> list[str]:
        """Each token decoded alone, special ones included (a piece of a character reads \ufffd)."""
        return self.tokenizer.batch_decode([[token] for token in tokens])

    def run(self, requests: list[CompletionRequest]) -> list[Completion]:
        groups: dict = {}
        for position, request in enumerate(requests):
            groups.setdefault(request.sampling_key(), []).append(position)
        rows_of: dict[int, list[Row]] = {}
        for positions in groups.values():
            group = [requests[p] for p in positions]
            rows = self._generate(group)
            for position, request in zip(positions, group):
                rows_of[position] = [row for row in rows if row.request is request]
        return [
            Completion(len(request.prompt_ids), [row.choice() for row in rows_of[position]])
            for position, request in enumerate(requests)
        ]

    def _generate(self, requests: list[CompletionRequest]) -> list[Row]:
        from transformers import GenerationConfig, StoppingCriteriaList

        rows = [Row(self.decode, self.eos_ids, request, request.first_choice + index)
                for request in requests for index in range(request.n)]
        width = max(len(row.request.prompt_ids) for row in rows)
        # Left padding: every row's next token goes in the same column.
        input_ids = [[self.pad_id] * (width - len(r.request.prompt_ids)) + r.request.prompt_ids for r in rows]
        attention = [[0] * (width - len(r.request.prompt_ids)) + [1] * len(r.request.prompt_ids) for r in rows]
        first = requests[0]
        sampling = first.temperature > 0
        # A config of our own, not the model's: its defaults (top_k, repetition
        # penalties, minimum lengths) are not part of OpenAI's parameters.
        config = GenerationConfig(
            max_new_tokens=max(request.max_tokens for request in requests),
            do_sample=sampling,
            pad_token_id=self.pad_id,
            eos_token_id=sorted(self.eos_ids),
            **({"temperature": first.temperature, "top_p": first.top_p, "top_k": 0} if sampling else {}),
        )
        if sampling and first.seed is not None:
            torch.manual_seed(first.seed)
        with inference():
            self.model.generate(
                input_ids=torch.tensor(input_ids, device=self.device),
                attention_mask=torch.tensor(attention, device=self.device),
                generation_config=config,
                stopping_criteria=StoppingCriteriaList([_Rows(rows)]),
            )
        for row in rows:
            row.end()
        return rows
