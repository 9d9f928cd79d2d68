"""Coalesce concurrent requests for one model and task into one forward pass.

Each (model, task) has one Batcher: a bounded queue and one worker thread. The
worker takes whole requests off the queue until the batch holds max_batch_size
items (a request is never split), runs them as one call, and hands each request
its own slice of the outputs. While one forward pass runs, the next requests
queue up, so the batch grows with the load. A request that finds the model idle
and nothing queued runs at once in its own thread (run_alone_inline): handing it
to the worker and back would cost two thread wake-ups, a noticeable share of a
small model's latency. Not with several torch threads: OpenMP keeps a team of
threads per calling thread, and passes started from many web threads would make
many teams fight over the cores.

Closed-loop clients (each sends its next request when the last one is answered)
come back one by one after their pass. Starting the next pass on the first
arrival splits them into a pass of one or two and a pass of the rest, or, with
two clients, into alternating passes of one; one pass of all of them is far
faster. So the worker may hold a batch open for up to max_wait, but only for the
requests it expects: as many as were in flight at once (submitted, not yet
answered) during the last two passes. A lone client is never delayed, and the
expectation falls back within two passes when the load drops. Measured with
closed-loop clients on 2 workers: 85 -> 107 requests/s at 2 clients, 138 -> 163
at 4, 245 -> 263 at 16, over expecting as many as the last batches held.

Accounts share a model fairly (core/fair_queue.py): each has its own queue, a batch
takes their requests round-robin, and an account may have at most its share of
max_queue waiting. The account is the request's (core.request_context), read at
submit.

Back-pressure: an account over its share of the queue is refused at once (429,
Retry-After) instead of waiting without bound, and a request whose deadline
passed before its turn is dropped unrun: its client has given up.

A model's own exception can quote the input or internals: it is logged with the
traceback and the request's id (taken at submit, as the worker thread runs
outside the request), and the client is told that id, not the exception.

Token-aware batching (token_batching.py): `prepare` tokenises a request on its own
thread at submit, overlapping the running pass; with a token budget the batch taken
is cut into passes of similar lengths within max_batch_tokens padded tokens.
"""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from core.errors import ApiError, ModelUnavailable, TooManyRequests
from core.request_context import current_account, current_request_id

from core.fair_queue import FairQueue
from .token_batching import run_in_passes

log = logging.getLogger(__name__)


# Seconds an account counts as using a model after its last request (_account_share).
RECENT_S = 1.0


class DeadlineExceeded(ApiError):
    status = 504


class PredictionFailed(ApiError):
    status = 500


class _Request:
    __slots__ = ("items", "future", "deadline", "request_id", "account")

    def __init__(self, items: list, deadline: float, request_id: str | None, account=None):
        self.items = items
        self.future: Future = Future()
        self.deadline = deadline
        self.request_id = request_id
        self.account = account


def _light_first(batch: list[_Request]) -> list[list[_Request]]:
    """The batch as the passes' groups, in the order they run: when one account
    holds more of it than all the others together (a flood beside a few
    requests), the others' requests run first, in a pass of their own, and the
    heavy account's after. A quiet account's request then waits for the pass in
    progress and a small pass, not for a full pass of the flood's items; the
    flood pays one small pass more per batch, only while others wait."""
    items: dict = {}
    for request in batch:
        items[request.account] = items.get(request.account, 0) + len(request.items)
    if len(items) < 2:
        return [batch]
    heaviest = max(items, key=items.get)
    if items[heaviest] <= sum(items.values()) - items[heaviest]:
        return [batch]
    return [[r for r in batch if r.account != heaviest], [r for r in batch if r.account == heaviest]]


def refuse_over_share(queue: FairQueue, account, max_queue: int, name: str) -> None:
    """429 for a request of `account` when the account already has its share of
    the model's queue waiting (or the whole queue is full)."""
    waiting, share = queue.waiting(account), queue.share(account, max_queue)
    # The total is bounded too: accounts joining one by one could each fill their share.
    if waiting >= share or len(queue) >= 2 * max_queue:
        others = queue.accounts() - (waiting > 0)
        shared = f", shared with {others} other account{'s' if others != 1 else ''}" if others else ""
        raise TooManyRequests(
            f"Model {name} is busy: {waiting} of your requests are queued, your share of its queue "
            f"(INFER_BATCH_MAX_QUEUE: {max_queue}{shared}). Retry shortly.",
            headers={"Retry-After": "1"},
        )


class Batcher:
    def __init__(
        self,
        run: Callable[[list], list],
        name: str,
        max_batch_size: int = 32,
        max_wait_s: float = 0.0,
        max_queue: int = 256,
        run_alone_inline: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        prepare: Callable[[list], list] | None = None,
        item_tokens: Callable[[object], int] | None = None,
        max_batch_tokens: int = 0,
    ):
        # `clock` measures deadlines and max_wait (monotonic seconds); tests pass their own.
        # `prepare`: a request's items as `run` takes them; `item_tokens`: a prepared item's length.
        self._run = run
        self._prepare = prepare
        self._item_tokens = item_tokens
        self.max_batch_tokens = max_batch_tokens if item_tokens is not None else 0
        self._clock = clock
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.run_alone_inline = run_alone_inline
        self._on_batch = on_batch or (lambda size, seconds: None)
        self._queue = FairQueue()
        self._recent: dict = {}  # account -> when it last submitted (see _account_share)
        self._ready = threading.Condition()
        self._closed = False
        self._busy = False  # a forward pass is running (in the worker or inline)
        # Requests submitted and not yet answered, the most of them seen while the
        # current pass ran, and that peak for the last two passes: how many
        # requests to expect in the next batch.
        self._in_flight = 0
        self._peak_in_flight = 0
        self._recent_peaks = (1, 1)
        self._thread = threading.Thread(target=self._work, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, items: list, timeout_s: float) -> list:
        """Run `items` in a shared batch; return their outputs in order."""
        request = self._new_request(items, timeout_s)
        with self._ready:
            self._admit(request.account)
            # Not while batches are expected to gather several requests: this one
            # would run alone ahead of the others the worker is holding a batch for.
            alone = self._expected() <= 1 or not self.max_wait_s
            run_here = self.run_alone_inline and alone and not self._busy and not self._queue and not self._closed
            if run_here:
                self._busy = True
                request.future.set_running_or_notify_cancel()
            else:
                self._queue.append(request.account, request)
                self._ready.notify()
        try:
            if run_here:  # its own forward pass: no queue wait, so no deadline to enforce
                try:
                    self._run_batch([request])
                finally:
                    self._finished()
                return request.future.result()
            try:
                return request.future.result(timeout=timeout_s)
            except FutureTimeout:
                request.future.cancel()  # the worker skips it if it has not started
                raise DeadlineExceeded(
                    f"Model {self.name} did not answer within {timeout_s:g}s (INFER_REQUEST_TIMEOUT_S)."
                ) from None
        finally:
            self._left()

    def submit_nowait(self, items: list, timeout_s: float) -> Future:
        """Queue `items` for the worker and return their future at once.

        For a caller that must keep its own thread while the pass runs (a
        streaming response writes tokens as they come). It waits in the same
        queue, under the same limits, as every other request; past `timeout_s`
        in the queue it is dropped with DeadlineExceeded. Cancelling the
        future before its pass starts takes it out of the queue.
        """
        request = self._new_request(items, timeout_s)
        with self._ready:
            self._admit(request.account)
            self._queue.append(request.account, request)
            self._ready.notify()
        request.future.add_done_callback(lambda _future: self._left())
        return request.future

    def _new_request(self, items: list, timeout_s: float) -> _Request:
        account = current_account.get()
        with self._ready:
            self._check_room(account)  # before preparing: a request over its share costs no tokenising
        return _Request(self._prepared(items), self._clock() + timeout_s, current_request_id.get(), account)

    def _prepared(self, items: list) -> list:
        """`items` as `run` takes them, prepared on the caller's thread; a failure is
        answered as a failed pass is (the details in the log)."""
        if self._prepare is None:
            return items
        request = _Request(items, 0.0, current_request_id.get())
        try:
            prepared = self._prepare(items)
            if len(prepared) != len(items):
                raise RuntimeError(f"prepared {len(prepared)} items for {len(items)} inputs")
            return prepared
        except Exception as exc:
            self._fail(request, exc)
            raise request.future.exception() from None

    def _admit(self, account) -> None:
        """Count a new request of `account` in, or refuse it (call with the lock held)."""
        self._check_room(account)
        self._recent[account] = self._clock()
        self._in_flight += 1
        self._peak_in_flight = max(self._peak_in_flight, self._in_flight)

    def _check_room(self, account) -> None:
        """Refuse a request of `account` unless the model is open and the account is
        within its share of the queue (call with the lock held)."""
        if self._closed:  # the model was unloaded after this request looked it up
            raise ModelUnavailable.just_unloaded(self.name)
        refuse_over_share(self._queue, account, self.max_queue, self.name)

    def _left(self) -> None:
        with self._ready:
            self._in_flight -= 1

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def queued(self) -> int:
        return len(self._queue)

    def _take_batch(self) -> list[_Request]:
        with self._ready:
            while self._busy or (not self._queue and not self._closed):
                self._ready.wait()
            if not self._queue:
                return []
            expected = self._expected()
            if self.max_wait_s and expected > 1:
                deadline = self._clock() + self.max_wait_s
                while (
                    len(self._queue) < expected
                    and self._queue.items() < self.max_batch_size
                    and not self._closed
                ):
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._ready.wait(remaining)  # woken or timed out: look at the queue and the clock again
            batch = self._queue.take(self.max_batch_size, self._still_wanted, per_account=self._account_share())
            self._busy = bool(batch)
            return batch

    def _account_share(self) -> int | None:
        """Items of a batch one account may take while several use the model
        (None: one account alone takes it all). A batch takes as long as its
        items, and another account's request, arriving while one runs, waits for
        it to end: a flood's batches are kept to a share, so that wait is short.
        Accounts count as using the model for RECENT_S after their last request,
        as a quiet client's next request comes a moment after its last answer."""
        now = self._clock()
        for account, seen in list(self._recent.items()):
            if now - seen > RECENT_S and not self._queue.waiting(account):
                del self._recent[account]
        if len(self._recent) < 2:
            return None
        return max(1, self.max_batch_size // len(self._recent))

    def _still_wanted(self, request: _Request) -> bool:
        """Whether a request taken off the queue is to run: not cancelled (its caller
        gave up) and not past its deadline."""
        if not request.future.set_running_or_notify_cancel():
            return False
        if self._clock() > request.deadline:
            request.future.set_exception(DeadlineExceeded(f"Model {self.name}: dropped, past its deadline."))
            return False
        return True

    def _finished(self) -> None:
        """A forward pass is over: let the worker take what queued meanwhile."""
        with self._ready:
            self._busy = False
            self._recent_peaks = (self._recent_peaks[1], self._peak_in_flight)
            self._peak_in_flight = self._in_flight
            if self._queue or self._closed:  # else nothing to take: a lone client's pass wakes no one
                self._ready.notify()

    def _expected(self) -> int:
        return max(self._recent_peaks)

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                if self._closed:
                    return
                continue
            try:
                self._run_batch(batch)
            finally:
                self._finished()

    def _run_batch(self, batch: list[_Request]) -> None:
        for tier in _light_first(batch):
            self._run_tier(tier)

    def _run_tier(self, batch: list[_Request]) -> None:
        if self.max_batch_tokens:  # cut into passes by the token budget
            return run_in_passes(batch, self._item_tokens, self._run_checked, self._fail,
                                 self.max_batch_size, self.max_batch_tokens)
        if len(batch) > 1:
            try:
                outputs = self._run_checked([item for request in batch for item in request.items])
            except Exception:
                # Run each request alone, so a bad input fails only its own request;
                # not those already past their deadline (their callers have their 504).
                for request in batch:
                    if self._clock() > request.deadline:
                        request.future.set_exception(
                            DeadlineExceeded(f"Model {self.name}: dropped, past its deadline."))
                    else:
                        self._run_tier([request])
                return
            offset = 0
            for request in batch:
                request.future.set_result(outputs[offset : offset + len(request.items)])
                offset += len(request.items)
            return
        request = batch[0]
        try:
            request.future.set_result(self._run_checked(request.items))
        except Exception as exc:
            self._fail(request, exc)

    def _fail(self, request: _Request, exc: Exception) -> None:
        if isinstance(exc, ApiError):  # the task's own input checks: keep their status
            return request.future.set_exception(exc)
        log.error("model %s failed on request %s", self.name, request.request_id, exc_info=exc)
        under = f" under request id {request.request_id}" if request.request_id else ""
        request.future.set_exception(PredictionFailed(
            f"Model {self.name} failed on this input; the details are in the service log{under}."))

    def _run_checked(self, items: list) -> list:
        started = time.perf_counter()
        outputs = self._run(items)
        if len(outputs) != len(items):
            raise RuntimeError(f"returned {len(outputs)} outputs for {len(items)} inputs")
        self._on_batch(len(items), time.perf_counter() - started)
        return outputs
