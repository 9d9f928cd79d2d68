"""Batcher: concurrent calls share forward passes, each caller gets its own outputs in order,
a full queue refuses at once, a bad input fails only its own request, deadlines drop work.

Events order these tests, not sleeps: a model whose passes wait at a gate the test
opens and that says when a pass starts, and a fake clock for deadlines and max_wait
that moves only when the test moves it and says when the batch worker looked at it.
No assertion depends on how long anything took.
"""

import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.errors import BadRequest, ModelUnavailable, TooManyRequests
from core.request_context import current_request_id
from model_registry.batcher import Batcher, DeadlineExceeded, PredictionFailed

from ..conftest import until

WAIT_S = 10  # how long a test waits for an event before it fails


class Gate:
    """Holds each forward pass until the test lets it through: one at a time, or all."""

    def __init__(self):
        self._changed = threading.Condition()
        self._passes = 0

    def let_through(self, passes: float = 1) -> None:
        with self._changed:
            self._passes += passes
            self._changed.notify_all()

    def open(self) -> None:
        self.let_through(math.inf)

    def wait(self) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self._passes > 0, WAIT_S), "the test never opened the gate"
            self._passes -= 1


class Doubler:
    """Doubles numbers (fails on "bad"); with a gate, each pass waits there."""

    def __init__(self, gate: Gate | None = None):
        self.gate = gate
        self.batches = []
        self._started = threading.Condition()

    def __call__(self, items):
        with self._started:
            self.batches.append(list(items))
            self._started.notify_all()
        if self.gate is not None:
            self.gate.wait()
        if "bad" in items:
            raise ValueError("cannot double 'bad'")
        return [item * 2 for item in items]

    @property
    def batch_sizes(self):
        return [len(batch) for batch in self.batches]

    def wait_started(self, passes: int) -> None:
        """Return once `passes` forward passes have started."""
        with self._started:
            assert self._started.wait_for(lambda: len(self.batches) >= passes, WAIT_S), self.batches


class FakeClock:
    """The batcher's clock: it moves only when the test moves it.

    The batch worker reads it, under the batcher's lock, each time it decides whether
    to go on holding a batch open and whether a request is past its deadline; so "the
    worker has looked at the clock" is an event a test can wait for, after which the
    worker has either gone back to waiting or taken its batch off the queue.
    """

    def __init__(self):
        self.now = 1000.0
        self.batcher = None  # set by batcher_with_clock
        self._read = threading.Condition()
        self._worker_reads = []  # the times the worker read

    def __call__(self) -> float:
        with self._read:
            if threading.current_thread().name == f"batcher-{self.batcher.name}":
                self._worker_reads.append(self.now)
                self._read.notify_all()
            return self.now

    def after_worker_looks(self, action=lambda: None, at_least: float | None = None) -> None:
        """Do `action`, then wait until the worker has read the clock (a time of at
        least `at_least`, if given) and has acted on what it read."""
        with self._read:
            before = len(self._worker_reads)
        action()
        with self._read:
            looked = self._read.wait_for(
                lambda: any(at_least is None or t >= at_least for t in self._worker_reads[before:]), WAIT_S)
        assert looked, "the batch worker never looked at the clock"
        with self.batcher._ready:  # the worker reads under this lock: it has finished deciding
            pass

    def advance(self, seconds: float) -> None:
        """Move time on and wait until the worker, holding a batch open, has seen it."""

        def move():
            self.now += seconds
            with self.batcher._ready:  # its wait times out on the real clock: wake it
                self.batcher._ready.notify_all()

        self.after_worker_looks(move, at_least=self.now + seconds)


def batcher_with_clock(run, name, **settings) -> tuple[Batcher, FakeClock]:
    clock = FakeClock()
    batcher = Batcher(run, name, clock=clock, **settings)
    clock.batcher = batcher
    return batcher, clock


def test_concurrent_requests_are_batched_and_each_gets_its_own_results_in_order():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_batch_size=64)

    def call(i):
        return batcher.submit([i, i + 1000, i + 2000], timeout_s=WAIT_S)

    with ThreadPoolExecutor(48) as pool:
        results = pool.map(call, range(48))
        model.wait_started(1)  # the first request to arrive runs alone, at once
        until(lambda: batcher.queued() == 47)  # the others queue behind it
        model.gate.open()
        results = list(results)

    assert results == [[2 * i, 2 * (i + 1000), 2 * (i + 2000)] for i in range(48)]
    assert model.batch_sizes == [3, 63, 63, 15]  # as many whole requests as fit in 64 items
    for batch in model.batches:  # each a run of whole requests
        assert [batch[k : k + 3] for k in range(0, len(batch), 3)] == [
            [i, i + 1000, i + 2000] for i in batch[::3]]


def test_batches_never_exceed_the_max_size_and_requests_are_not_split():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_batch_size=5)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(batcher.submit, [0, 0], WAIT_S)
        model.wait_started(1)
        queued = [batcher.submit_nowait([i, i], WAIT_S) for i in range(1, 6)]  # 10 items wait
        model.gate.open()
        results = [first.result(WAIT_S)] + [f.result(WAIT_S) for f in queued]

    assert results == [[2 * i, 2 * i] for i in range(6)]
    assert model.batch_sizes == [2, 4, 4, 2]  # filling 5 would take half a request


@pytest.mark.parametrize("run_alone_inline", [True, False])
def test_a_lone_client_is_never_held_open_for_max_wait(run_alone_inline):
    # The clock never moves: a batch held open for company would wait until the
    # caller's own timeout, and the call would fail instead of answering.
    batcher, _clock = batcher_with_clock(lambda items: items, "echo", max_wait_s=3600,
                                         run_alone_inline=run_alone_inline)
    for n in range(5):  # one request at a time: no batch ever expects company
        assert batcher.submit([n], WAIT_S) == [n]


def test_a_lone_request_runs_in_its_callers_thread_and_the_others_queue():
    # Idle model, nothing queued: no hand-off to the worker thread and back.
    threads = []
    gate = Gate()

    def model(items):
        threads.append(threading.current_thread().name)
        gate.wait()
        return items

    batcher = Batcher(model, "echo", max_wait_s=0)
    with ThreadPoolExecutor(2, thread_name_prefix="caller") as pool:
        lone = pool.submit(batcher.submit, ["a"], WAIT_S)
        until(lambda: threads)  # "a" is running
        queued = pool.submit(batcher.submit, ["b"], WAIT_S)  # arrives while "a" runs
        until(lambda: batcher.queued() == 1)
        gate.open()
        assert lone.result(WAIT_S) == ["a"] and queued.result(WAIT_S) == ["b"]
    assert threads[0].startswith("caller") and threads[1] == "batcher-echo"


def test_without_inline_runs_every_pass_is_on_the_batch_worker():
    # For models on several torch threads: one OpenMP team, on one thread.
    threads = []
    batcher = Batcher(lambda items: threads.append(threading.current_thread().name) or items, "echo",
                      run_alone_inline=False)
    assert batcher.submit(["a"], WAIT_S) == ["a"]
    assert threads == ["batcher-echo"]


def test_never_two_forward_passes_at_once():
    # A load test: many closed-loop clients, inline runs and worker passes mixed.
    # The sleeps stand for the time a pass and a client take, so that passes could
    # overlap; they order nothing, and a correct batcher passes whatever the timing.
    running, most = [0], [0]
    lock = threading.Lock()

    def model(items):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.002)
        with lock:
            running[0] -= 1
        return [item * 2 for item in items]

    batcher = Batcher(model, "double", max_wait_s=0.005)

    def client(n):
        out = []
        for i in range(20):
            out.append(batcher.submit([n * 100 + i], WAIT_S))
            time.sleep(0.001 * (n % 3))
        return out

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(client, range(12)))
    assert results == [[[2 * (n * 100 + i)] for i in range(20)] for n in range(12)]
    assert most[0] == 1


def _batch_of_four_then(batcher, model, clock, pool):
    """Run one request, then four queued behind it as one batch: five requests
    were in flight at once, so the batcher now expects five at a time."""
    first = pool.submit(batcher.submit, [0], WAIT_S)  # runs at once, held at the gate
    model.wait_started(1)
    queued = [batcher.submit_nowait([i], WAIT_S) for i in (1, 2, 3, 4)]
    if batcher.max_wait_s:
        clock.after_worker_looks(model.gate.open)  # it holds the four open for a fifth ...
        clock.advance(batcher.max_wait_s)  # ... which never comes
    else:
        model.gate.open()
    assert [f.result(WAIT_S) for f in [first, *queued]] == [[0], [2], [4], [6], [8]]
    assert model.batch_sizes == [1, 4]


def test_after_several_requests_in_flight_the_next_batch_waits_for_as_many():
    # Closed-loop clients come back one by one after their pass: the batch is
    # held open until as many as were in flight at once have arrived.
    model = Doubler(Gate())
    batcher, clock = batcher_with_clock(model, "double", max_wait_s=5, max_batch_size=8)
    with ThreadPoolExecutor(8) as pool:
        _batch_of_four_then(batcher, model, clock, pool)
        futures = []
        for value in [10, 11, 12, 13, 14]:  # the clock stands still: max_wait never ends a batch
            # The worker sees each arrival before the next: it runs it or holds it open.
            clock.after_worker_looks(lambda: futures.append(pool.submit(batcher.submit, [value], WAIT_S)))
        assert [f.result(WAIT_S) for f in futures] == [[20], [22], [24], [26], [28]]
    assert model.batch_sizes == [1, 4, 5]


def test_two_staggered_clients_are_brought_into_one_pass():
    # Two closed-loop clients whose requests never arrive together: B's request
    # finds A's running, A's next finds B's waiting. Expecting two in flight, the
    # batcher holds B's pass for A instead of alternating passes of one.
    model = Doubler(Gate())
    batcher, clock = batcher_with_clock(model, "double", max_wait_s=5, max_batch_size=8)
    with ThreadPoolExecutor(4) as pool:
        a1 = pool.submit(batcher.submit, ["a1"], WAIT_S)
        model.wait_started(1)
        b1 = pool.submit(batcher.submit, ["b1"], WAIT_S)
        until(lambda: batcher.queued() == 1)
        clock.after_worker_looks(lambda: model.gate.let_through(1))  # A's pass ends; the worker takes up B's
        assert a1.result(WAIT_S) == ["a1a1"]
        a2 = pool.submit(batcher.submit, ["a2"], WAIT_S)  # A comes back
        model.wait_started(2)
        model.gate.open()
        assert b1.result(WAIT_S) == ["b1b1"] and a2.result(WAIT_S) == ["a2a2"]

        # Both come back at once, in either order: one pass again.
        b2, a3 = pool.submit(batcher.submit, ["b2"], WAIT_S), pool.submit(batcher.submit, ["a3"], WAIT_S)
        assert b2.result(WAIT_S) == ["b2b2"] and a3.result(WAIT_S) == ["a3a3"]
    assert model.batches[:2] == [["a1"], ["b1", "a2"]]
    assert sorted(model.batches[2]) == ["a3", "b2"] and len(model.batches) == 3


def test_a_batch_is_held_open_no_longer_than_max_wait():
    model = Doubler(Gate())
    batcher, clock = batcher_with_clock(model, "double", max_wait_s=4, max_batch_size=8)
    with ThreadPoolExecutor(8) as pool:
        _batch_of_four_then(batcher, model, clock, pool)
        late = []
        clock.after_worker_looks(lambda: late.append(pool.submit(batcher.submit, [7], WAIT_S)))
        clock.advance(3.5)
        assert batcher.queued() == 1 and model.batch_sizes == [1, 4]  # held for the four it expects
        clock.advance(0.5)  # max_wait is over: the four never came
        assert late[0].result(WAIT_S) == [14]
    assert model.batch_sizes == [1, 4, 1]


def test_with_max_wait_zero_a_batch_is_never_held_open():
    model = Doubler(Gate())
    batcher, clock = batcher_with_clock(model, "double", max_wait_s=0, max_batch_size=8)
    with ThreadPoolExecutor(8) as pool:
        _batch_of_four_then(batcher, model, clock, pool)
        # Five are expected, and the clock stands still: only not holding answers these.
        assert batcher.submit([10], WAIT_S) == [20]
        assert batcher.submit_nowait([11], WAIT_S).result(WAIT_S) == [22]
    assert model.batch_sizes == [1, 4, 1, 1]


def test_a_full_queue_is_refused_at_once_with_retry_after():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_queue=2)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(batcher.submit, [1], WAIT_S)  # runs, held at the gate
        model.wait_started(1)
        queued = [batcher.submit_nowait([i], WAIT_S) for i in (2, 3)]
        with pytest.raises(TooManyRequests) as refused:
            batcher.submit([4], WAIT_S)
        model.gate.open()
        assert running.result(WAIT_S) == [2] and [f.result(WAIT_S) for f in queued] == [[4], [6]]
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "1"
    assert 4 not in [item for batch in model.batches for item in batch]


def test_an_error_in_one_item_fails_only_its_own_request():
    model = Doubler(Gate())
    batcher = Batcher(model, "double")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(batcher.submit, [0], WAIT_S)  # occupies the model
        model.wait_started(1)
        good = batcher.submit_nowait([1, 2], WAIT_S)
        bad = batcher.submit_nowait([3, "bad"], WAIT_S)
        other = batcher.submit_nowait([4], WAIT_S)
        model.gate.open()
        assert first.result(WAIT_S) == [0]
        assert good.result(WAIT_S) == [2, 4]
        assert other.result(WAIT_S) == [8]
        with pytest.raises(PredictionFailed, match="failed on this input") as failed:
            bad.result(WAIT_S)
    assert failed.value.status == 500
    assert "cannot double" not in failed.value.message  # the model's own text stays in the log
    # The three were first tried together, then each alone.
    assert model.batches == [[0], [1, 2, 3, "bad", 4], [1, 2], [3, "bad"], [4]]


def test_a_task_error_keeps_its_own_status():
    def reject(items):
        raise BadRequest("image 0 is not an image")

    with pytest.raises(BadRequest):
        Batcher(reject, "reject").submit(["x"], WAIT_S)


def test_a_failure_on_the_worker_thread_is_logged_under_the_request_id_taken_at_submit(caplog):
    # The pass runs on the batcher's thread, where the request's context is not set.
    def broken(items):
        raise ValueError("token=hunter2 in the input")

    batcher = Batcher(broken, "broken", run_alone_inline=False)
    token = current_request_id.set("req-abc.1")
    try:
        with caplog.at_level(logging.ERROR), pytest.raises(PredictionFailed) as failed:
            batcher.submit(["x"], WAIT_S)
    finally:
        current_request_id.reset(token)

    assert "hunter2" not in failed.value.message
    assert "request id req-abc.1" in failed.value.message and "service log" in failed.value.message
    [record] = [r for r in caplog.records if r.name == "model_registry.batcher"]
    assert record.threadName == "batcher-broken"
    assert "req-abc.1" in record.getMessage()
    assert record.exc_info and "hunter2" in str(record.exc_info[1])


def test_a_user_models_worker_error_keeps_its_message():
    # The user sees their own model's error: it is theirs, not the service's internals.
    from uploads.worker_client import WorkerFailed

    def failing(items):
        raise WorkerFailed("Model mine failed: KeyError: 'colour'")

    with pytest.raises(WorkerFailed, match="KeyError: 'colour'"):
        Batcher(failing, "mine").submit(["x"], WAIT_S)


def test_work_past_its_deadline_is_dropped_unrun():
    model = Doubler(Gate())
    batcher, clock = batcher_with_clock(model, "double")
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(batcher.submit, [1], WAIT_S)
        model.wait_started(1)
        late = batcher.submit_nowait([2], timeout_s=5)
        clock.now += 6  # its 5 s pass while it queues behind the blocker
        model.gate.open()
        assert blocker.result(WAIT_S) == [2]
        with pytest.raises(DeadlineExceeded, match="past its deadline") as dropped:
            late.result(WAIT_S)
    assert dropped.value.status == 504
    assert model.batches == [[1]]  # the late request never reached the model


def test_after_a_failed_pass_requests_past_their_deadline_are_not_run_again_alone():
    model = Doubler(Gate())
    batcher, clock = batcher_with_clock(model, "double", max_batch_size=8)
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(batcher.submit, [1], WAIT_S)
        model.wait_started(1)
        bad = batcher.submit_nowait(["bad"], timeout_s=5)
        expired = batcher.submit_nowait([2], timeout_s=5)
        kept = batcher.submit_nowait([3], timeout_s=60)
        model.gate.let_through(1)  # the blocker's pass
        model.wait_started(2)  # the three's shared pass has started (it will fail)
        clock.now += 6  # and ends after 6 s: two of them are past their deadline
        model.gate.open()
        assert blocker.result(WAIT_S) == [2] and kept.result(WAIT_S) == [6]
        for late in (bad, expired):
            with pytest.raises(DeadlineExceeded, match="past its deadline"):
                late.result(WAIT_S)
    assert model.batches == [[1], ["bad", 2, 3], [3]]  # only the one still wanted ran again


def test_work_whose_caller_gave_up_waiting_is_dropped_unrun():
    # The batcher's clock stands still, so its deadline check would not drop the
    # request: only the caller's giving up (after a real 0.05 s) takes it out.
    model = Doubler(Gate())
    batcher, _clock = batcher_with_clock(model, "double")
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(batcher.submit, [1], WAIT_S)
        model.wait_started(1)
        with pytest.raises(DeadlineExceeded) as late:  # the model is held: no answer within 0.05 s
            batcher.submit([2], timeout_s=0.05)
        model.gate.open()
        assert blocker.result(WAIT_S) == [2]
    # The worker takes requests in order: once this one is answered, [2]'s turn has passed.
    assert batcher.submit_nowait([3], WAIT_S).result(WAIT_S) == [6]
    assert late.value.status == 504
    assert model.batches == [[1], [3]]  # the abandoned request never reached the model


def test_close_stops_the_worker_after_draining():
    model = Doubler(Gate())
    batcher = Batcher(model, "double")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(batcher.submit, [1], WAIT_S)
        model.wait_started(1)
        queued = [batcher.submit_nowait([i], WAIT_S) for i in (2, 3)]
        batcher.close()
        model.gate.open()
        assert running.result(WAIT_S) == [2]
        assert [f.result(WAIT_S) for f in queued] == [[4], [6]]  # what was queued still runs
    batcher._thread.join(timeout=WAIT_S)
    assert not batcher._thread.is_alive()


def test_a_request_reaching_a_closed_batcher_is_refused_at_once_not_left_waiting():
    # It looked the model up just before the model was unloaded. Nothing but the
    # submit itself raises ModelUnavailable, so raising it means: at once, unqueued.
    batcher = Batcher(lambda items: items, "echo", run_alone_inline=False)
    batcher.close()
    with pytest.raises(ModelUnavailable) as refused:
        batcher.submit([1], timeout_s=30)
    with pytest.raises(ModelUnavailable):
        batcher.submit_nowait([1], timeout_s=30)
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
    assert batcher.queued() == 0 and batcher._in_flight == 0


def test_submit_nowait_returns_at_once_and_its_future_carries_the_outputs():
    model = Doubler(Gate())
    batcher = Batcher(model, "double")

    future = batcher.submit_nowait([1, 2], timeout_s=WAIT_S)
    model.wait_started(1)
    assert not future.done()  # the pass waits at the gate, and the caller did not
    model.gate.open()

    assert future.result(timeout=WAIT_S) == [2, 4]


def test_submit_nowait_shares_the_queue_limit_and_a_cancelled_one_never_runs():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_queue=2, max_batch_size=1)
    running = batcher.submit_nowait([1], timeout_s=WAIT_S)
    model.wait_started(1)  # the worker took it
    cancelled = batcher.submit_nowait([100], timeout_s=WAIT_S)
    queued = batcher.submit_nowait([3], timeout_s=WAIT_S)

    with pytest.raises(TooManyRequests):
        batcher.submit_nowait([4], timeout_s=WAIT_S)
    assert cancelled.cancel()  # its client went away while it queued
    model.gate.open()

    assert running.result(timeout=WAIT_S) == [2] and queued.result(timeout=WAIT_S) == [6]
    assert model.batches == [[1], [3]]  # 100 was never doubled
    until(lambda: batcher._in_flight == 0)  # a future's callbacks run just after its result is set
