"""Hugging Face tokenizers used by several threads.

A fast (Rust) tokenizer is shared by a model's batcher threads and the request
threads that count or render prompts; a call with padding or truncation
arguments changes its settings in place, so a call in another thread at that
moment fails with "Already borrowed" (huggingface/tokenizers#537) or, worse,
runs with the other call's truncation (wrong token counts). Calls are short
next to a forward pass, so a lock costs nothing visible.
"""

import copy
import threading
from collections.abc import Callable


class SerialTokenizer:
    """A tokenizer that one thread at a time may use (every call under one lock)."""

    _LOCKED = ("encode", "decode", "batch_decode", "apply_chat_template")

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    def __call__(self, *args, **kwargs):
        with self._lock:
            return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name):
        value = getattr(self._tokenizer, name)
        if name not in self._LOCKED:
            return value

        def locked(*args, **kwargs):
            with self._lock:
                return value(*args, **kwargs)

        return locked


def token_counter(tokenizer, max_length: int) -> Callable[[list[str]], list[int]]:
    """A function counting the tokens a model reads of each text: special tokens
    included, cut at `max_length` as the model's own tokenization cuts them.

    It tokenizes with its own copy of the tokenizer, under its own lock: a fast
    tokenizer changes its truncation and padding settings in place, and one
    shared between a request thread and the batch thread (or two request
    threads) can fail with "Already borrowed".
    """
    counter = copy.deepcopy(tokenizer)
    lock = threading.Lock()

    def count_tokens(texts: list[str]) -> list[int]:
        with lock:
            encoded = counter(texts, truncation=True, max_length=max_length)
        return [len(ids) for ids in encoded["input_ids"]]

    return count_tokens
