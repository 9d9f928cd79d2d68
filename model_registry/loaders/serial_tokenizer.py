"""A Hugging Face tokenizer that one thread at a time may use.

A fast (Rust) tokenizer is shared by a model's batcher threads and the request
threads that count or render prompts; a call with padding or truncation
arguments changes its settings, and a call in another thread at that moment
fails with "Already borrowed" (huggingface/tokenizers#537). Calls are short
next to a forward pass, so one lock costs nothing visible.
"""

import threading


class SerialTokenizer:
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
