"""A generation streamed as server-sent events, in OpenAI's chunk format.

The generation runs in the model's batcher (its own thread, in the same queue
and under the same limits as every other request); the response's generator
only turns what the model hands to the request's TokenStream into chunks.

A client that goes away must not keep the model busy: the web server notices
when a write fails and closes the generator, whose `finally` cancels the
stream (the model stops that request's rows at their next token) and the
future (a request still queued is dropped unrun). While the request waits in
the queue, a comment line every second keeps checking that someone still
listens.

A stream is bounded by INFER_REQUEST_TIMEOUT_S from its submit, as a
non-streaming request is: a generation holds its model's pass (every other
request on the model waits for it to end), so one that would stream on past
the deadline is stopped at its next token by its GenerationControl, and the
stream ends with a 504 error event (after the text already sent) instead of a
finish_reason.
"""

import logging
import queue
import time
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future

import orjson
from flask import Response

from core.errors import ApiError
from model_registry.batcher import DeadlineExceeded
from model_registry.loaders.completion import END, TokenStream
from model_registry.loaders.generation import CANCELLED, DEADLINE, GenerationControl

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
# An SSE comment: ignored by clients, but a write that fails once the client is gone.
STILL_WAITING = b": waiting for the model\n\n"
POLL_S = 1.0


def event(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ChunkShape:
    """How one route spells its chunks (chat and completions differ)."""

    def opening(self) -> list[dict]:
        return []

    def text(self, index: int, text: str) -> dict:
        raise NotImplementedError

    def end(self, index: int, finish_reason: str) -> dict:
        raise NotImplementedError

    def usage(self, results) -> dict:
        raise NotImplementedError


def event_stream(future: Future, stream: TokenStream, shape: ChunkShape, include_usage: bool,
                 timeout_s: float, error_body: Callable[[ApiError], dict],
                 control: GenerationControl | None = None) -> Response:
    """`control` is the one the request's rows carry, with their deadline
    (`timeout_s` from the submit); None: a deadline `timeout_s` from now."""
    if control is None:
        control = GenerationControl(deadline=time.monotonic() + timeout_s)
    finished = object()
    future.add_done_callback(lambda _future: stream.events.put(finished))

    def chunks() -> Iterator[bytes]:
        try:
            for payload in shape.opening():
                yield event(payload)
            past_deadline = False
            while True:
                try:
                    item = stream.events.get(timeout=POLL_S)
                except queue.Empty:
                    if time.monotonic() > control.deadline:
                        control.stop(DEADLINE)  # running: its rows stop at their next token
                        if not future.running() and future.cancel():
                            raise DeadlineExceeded(
                                f"The model did not start within {timeout_s:g}s (INFER_REQUEST_TIMEOUT_S).")
                    if not future.running():
                        yield STILL_WAITING
                    continue
                if item is finished:
                    break
                if item[1] == END:
                    past_deadline = past_deadline or item[2] == DEADLINE
                    if item[2] not in (CANCELLED, DEADLINE):
                        yield event(shape.end(item[0], item[2]))
                else:
                    yield event(shape.text(*item))
            results = future.result()
            if past_deadline:
                raise DeadlineExceeded(
                    f"The generation did not finish within {timeout_s:g}s (INFER_REQUEST_TIMEOUT_S) and was "
                    "stopped after the text sent. Ask for fewer tokens, or retry when the model is less busy.")
            if include_usage:
                yield event(shape.usage(results))
            yield DONE
        except ApiError as exc:
            yield event(error_body(exc))
            yield DONE
        except CancelledError:
            return
        finally:
            if not future.done():
                log.info("stream closed before its generation ended: stopping it")
            stream.cancel()
            future.cancel()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(_Closing(chunks(), stream, future), mimetype="text/event-stream", headers=headers)


class _Closing:
    """The chunks, with a close() that stops the generation even if the server
    never started iterating them (a generator's `finally` runs only once it has
    started): WSGI servers call close() on every response they are handed."""

    def __init__(self, chunks: Iterator[bytes], stream: TokenStream, future: Future):
        self._chunks = chunks
        self._stream = stream
        self._future = future

    def __iter__(self):
        return self._chunks

    def close(self) -> None:
        self._chunks.close()
        self._stream.cancel()
        self._future.cancel()
