"""A generation streamed as server-sent events, in OpenAI's chunk format.

The generation runs in the model's batcher (its own thread, in the same queue
and under the same limits as every other request); the response's generator
only turns what the model hands to the request's TokenStream into chunks.

A client that goes away must not keep the model busy: the web server notices
when a write fails and closes the generator, whose `finally` cancels the
stream (the model stops that request's rows at their next token) and the
future (a request still queued is dropped unrun). While the request waits in
the queue, a comment line every second keeps checking that someone still
listens, and the queue wait is bounded by INFER_REQUEST_TIMEOUT_S as for a
non-streaming request.
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
                 queue_timeout_s: float, error_body: Callable[[ApiError], dict]) -> Response:
    finished = object()
    future.add_done_callback(lambda _future: stream.events.put(finished))
    deadline = time.monotonic() + queue_timeout_s

    def chunks() -> Iterator[bytes]:
        try:
            for payload in shape.opening():
                yield event(payload)
            while True:
                try:
                    item = stream.events.get(timeout=POLL_S)
                except queue.Empty:
                    if not future.running() and time.monotonic() > deadline and future.cancel():
                        raise DeadlineExceeded(
                            f"The model did not start within {queue_timeout_s:g}s (INFER_REQUEST_TIMEOUT_S).")
                    if not future.running():
                        yield STILL_WAITING
                    continue
                if item is finished:
                    break
                if item[1] == END:
                    if item[2] != "cancelled":
                        yield event(shape.end(item[0], item[2]))
                else:
                    yield event(shape.text(*item))
            results = future.result()
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
