"""Batcher: concurrent calls share forward passes, each caller gets its own outputs in order,
a full queue refuses at once, a bad input fails only its own request, deadlines drop work."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.errors import BadRequest, ModelUnavailable, TooManyRequests
from app.request_id import current_request_id
from model_registry.batcher import Batcher, DeadlineExceeded, PredictionFailed


class SlowDoubler:
    """Doubles numbers; takes a while per call so concurrent requests pile up."""

    def __init__(self, delay=0.02, gate=None):
        self.delay = delay
        self.gate = gate
        self.batch_sizes = []

    def __call__(self, items):
        if self.gate is not None:
            self.gate.wait(10)
        self.batch_sizes.append(len(items))
        time.sleep(self.delay)
        if "bad" in items:
            raise ValueError("cannot double 'bad'")
        return [item * 2 for item in items]


def test_concurrent_requests_are_batched_and_each_gets_its_own_results_in_order():
    model = SlowDoubler()
    batcher = Batcher(model, "double", max_batch_size=64)

    def call(i):
        return batcher.submit([i, i + 1000, i + 2000], timeout_s=10)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(48)))

    assert results == [[2 * i, 2 * (i + 1000), 2 * (i + 2000)] for i in range(48)]
    assert max(model.batch_sizes) > 3  # several requests went through one call
    assert sum(model.batch_sizes) == 48 * 3
    assert len(model.batch_sizes) < 48


def test_batches_never_exceed_the_max_size_and_requests_are_not_split():
    model = SlowDoubler(gate=threading.Event())
    batcher = Batcher(model, "double", max_batch_size=4)
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(batcher.submit, [i, i], 10) for i in range(6)]
        time.sleep(0.2)
        model.gate.set()
        results = [f.result() for f in futures]

    assert results == [[2 * i, 2 * i] for i in range(6)]
    assert all(size <= 4 and size % 2 == 0 for size in model.batch_sizes)


def test_a_lone_client_is_never_held_open_for_max_wait():
    batcher = Batcher(lambda items: items, "echo", max_wait_s=5)
    for n in range(5):  # one request at a time: no batch ever expects company
        started = time.perf_counter()
        assert batcher.submit([n], 10) == [n]
        assert time.perf_counter() - started < 2.5


def test_a_lone_request_runs_in_its_callers_thread_and_the_others_queue():
    # Idle model, nothing queued: no hand-off to the worker thread and back.
    threads = []
    gate = threading.Event()

    def model(items):
        threads.append(threading.current_thread().name)
        gate.wait(10)
        return items

    batcher = Batcher(model, "echo", max_wait_s=0)
    with ThreadPoolExecutor(2, thread_name_prefix="caller") as pool:
        lone = pool.submit(batcher.submit, ["a"], 10)
        time.sleep(0.1)
        queued = pool.submit(batcher.submit, ["b"], 10)  # arrives while "a" runs
        time.sleep(0.1)
        gate.set()
        assert lone.result() == ["a"] and queued.result() == ["b"]
    assert threads[0].startswith("caller") and threads[1] == "batcher-echo"


def test_without_inline_runs_every_pass_is_on_the_batch_worker():
    # For models on several torch threads: one OpenMP team, on one thread.
    threads = []
    batcher = Batcher(lambda items: threads.append(threading.current_thread().name) or items, "echo",
                      run_alone_inline=False)
    assert batcher.submit(["a"], 10) == ["a"]
    assert threads == ["batcher-echo"]


def test_never_two_forward_passes_at_once():
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
            out.append(batcher.submit([n * 100 + i], 10))
            time.sleep(0.001 * (n % 3))
        return out

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(client, range(12)))
    assert results == [[[2 * (n * 100 + i)] for i in range(20)] for n in range(12)]
    assert most[0] == 1


def _batch_of_four_then(batcher, model, pool):
    """Run one request, then four queued behind it as one batch: five requests
    were in flight at once, so the batcher now expects five at a time."""
    first = pool.submit(batcher.submit, [0], 10)
    time.sleep(0.1)
    queued = [pool.submit(batcher.submit, [i], 10) for i in (1, 2, 3, 4)]
    time.sleep(0.1)
    model.gate.set()
    assert [f.result() for f in [first, *queued]] == [[0], [2], [4], [6], [8]]
    assert model.batch_sizes == [1, 4]


def _one_by_one(batcher, pool, values, gap_s):
    """Submit one request per value, gap_s apart (clients coming back one by one)."""
    futures = []
    for value in values:
        futures.append(pool.submit(batcher.submit, [value], 10))
        time.sleep(gap_s)
    return [f.result() for f in futures]


def test_after_several_requests_in_flight_the_next_batch_waits_for_as_many():
    # Closed-loop clients come back one by one after their pass: the batch is
    # held open until as many as were in flight at once have arrived.
    model = SlowDoubler(delay=0, gate=threading.Event())
    batcher = Batcher(model, "double", max_wait_s=5, max_batch_size=8)
    with ThreadPoolExecutor(8) as pool:
        _batch_of_four_then(batcher, model, pool)
        started = time.perf_counter()
        results = _one_by_one(batcher, pool, [10, 11, 12, 13, 14], gap_s=0.05)
        assert results == [[20], [22], [24], [26], [28]]
        assert time.perf_counter() - started < 2.5  # released by the fifth arrival, not by max_wait
    assert model.batch_sizes == [1, 4, 5]


def test_two_staggered_clients_are_brought_into_one_pass():
    # Two clients whose requests never arrive together: each finds the other's
    # request running. Expecting two in flight, the batcher holds the next pass
    # for the other client instead of alternating passes of one.
    model = SlowDoubler(delay=0.05)
    batcher = Batcher(model, "double", max_wait_s=0.5, max_batch_size=8)

    def client(offset):
        time.sleep(offset)
        return [batcher.submit([offset], 10) for _ in range(8)]

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(client, [0, 0.02]))
    assert results == [[[0]] * 8, [[0.04]] * 8]
    assert model.batch_sizes.count(2) >= 6, model.batch_sizes  # of 16 requests, at most 4 alone


def test_a_batch_is_held_open_no_longer_than_max_wait():
    model = SlowDoubler(delay=0, gate=threading.Event())
    batcher = Batcher(model, "double", max_wait_s=0.3, max_batch_size=8)
    with ThreadPoolExecutor(8) as pool:
        _batch_of_four_then(batcher, model, pool)
        started = time.perf_counter()
        assert batcher.submit([7], 10) == [14]  # the four expected companions never come
        waited = time.perf_counter() - started
    assert 0.25 <= waited < 3
    assert model.batch_sizes == [1, 4, 1]


def test_with_max_wait_zero_a_batch_is_never_held_open():
    model = SlowDoubler(delay=0, gate=threading.Event())
    batcher = Batcher(model, "double", max_wait_s=0, max_batch_size=8)
    with ThreadPoolExecutor(8) as pool:
        _batch_of_four_then(batcher, model, pool)
        assert _one_by_one(batcher, pool, [10, 11], gap_s=0.2) == [[20], [22]]
    assert model.batch_sizes == [1, 4, 1, 1]


def test_a_full_queue_is_refused_at_once_with_retry_after():
    gate = threading.Event()
    batcher = Batcher(SlowDoubler(gate=gate), "double", max_queue=2)
    with ThreadPoolExecutor(4) as pool:
        running = pool.submit(batcher.submit, [1], 10)  # taken by the worker, blocked on the gate
        time.sleep(0.1)
        queued = [pool.submit(batcher.submit, [i], 10) for i in (2, 3)]
        time.sleep(0.1)
        with pytest.raises(TooManyRequests) as refused:
            batcher.submit([4], 10)
        gate.set()
        assert running.result() == [2] and [f.result() for f in queued] == [[4], [6]]
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "1"


def test_an_error_in_one_item_fails_only_its_own_request():
    gate = threading.Event()
    model = SlowDoubler(gate=gate)
    batcher = Batcher(model, "double")
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(batcher.submit, [0], 10)  # occupies the worker
        time.sleep(0.1)
        good = pool.submit(batcher.submit, [1, 2], 10)
        bad = pool.submit(batcher.submit, [3, "bad"], 10)
        other = pool.submit(batcher.submit, [4], 10)
        time.sleep(0.1)
        gate.set()
        assert first.result() == [0]
        assert good.result() == [2, 4]
        assert other.result() == [8]
        with pytest.raises(PredictionFailed, match="failed on this input") as failed:
            bad.result()
    assert failed.value.status == 500
    assert "cannot double" not in failed.value.message  # the model's own text stays in the log
    assert 5 in model.batch_sizes  # the three requests (5 items) were first tried together


def test_a_task_error_keeps_its_own_status():
    def reject(items):
        raise BadRequest("image 0 is not an image")

    with pytest.raises(BadRequest):
        Batcher(reject, "reject").submit(["x"], 10)


def test_a_failure_on_the_worker_thread_is_logged_under_the_request_id_taken_at_submit(caplog):
    # The pass runs on the batcher's thread, where the request's context is not set.
    def broken(items):
        raise ValueError("token=hunter2 in the input")

    batcher = Batcher(broken, "broken", run_alone_inline=False)
    token = current_request_id.set("req-abc.1")
    try:
        with caplog.at_level(logging.ERROR), pytest.raises(PredictionFailed) as failed:
            batcher.submit(["x"], 10)
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
        Batcher(failing, "mine").submit(["x"], 10)


def test_work_past_its_deadline_is_dropped_unrun():
    gate = threading.Event()
    model = SlowDoubler(gate=gate, delay=0)
    batcher = Batcher(model, "double")
    with ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(batcher.submit, [1], 10)
        time.sleep(0.1)
        with pytest.raises(DeadlineExceeded) as late:
            batcher.submit([2], timeout_s=0.2)
        gate.set()
        blocker.result()
    time.sleep(0.1)
    assert late.value.status == 504
    assert model.batch_sizes == [1]  # the late request never reached the model


def test_close_stops_the_worker_after_draining():
    batcher = Batcher(lambda items: items, "echo")
    assert batcher.submit([1], 10) == [1]
    batcher.close()
    batcher._thread.join(timeout=5)
    assert not batcher._thread.is_alive()


def test_a_request_reaching_a_closed_batcher_is_refused_at_once_not_left_waiting():
    # It looked the model up just before the model was unloaded.
    batcher = Batcher(lambda items: items, "echo", run_alone_inline=False)
    batcher.close()
    started = time.perf_counter()
    with pytest.raises(ModelUnavailable) as refused:
        batcher.submit([1], timeout_s=30)
    assert time.perf_counter() - started < 5
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"


def test_submit_nowait_returns_at_once_and_its_future_carries_the_outputs():
    gate = threading.Event()
    model = SlowDoubler(gate=gate)
    batcher = Batcher(model, "double")

    future = batcher.submit_nowait([1, 2], timeout_s=10)
    assert not future.done()  # the pass waits on the gate, and the caller did not
    gate.set()

    assert future.result(timeout=10) == [2, 4]


def test_submit_nowait_shares_the_queue_limit_and_a_cancelled_one_never_runs():
    gate = threading.Event()
    model = SlowDoubler(gate=gate)
    batcher = Batcher(model, "double", max_queue=2, max_batch_size=1)
    running = batcher.submit_nowait([1], timeout_s=10)
    deadline = time.monotonic() + 5
    while not running.running() and time.monotonic() < deadline:  # the worker took it
        time.sleep(0.01)
    cancelled = batcher.submit_nowait([100], timeout_s=10)
    queued = batcher.submit_nowait([3], timeout_s=10)

    with pytest.raises(TooManyRequests):
        batcher.submit_nowait([4], timeout_s=10)
    assert cancelled.cancel()  # its client went away while it queued
    gate.set()

    assert running.result(timeout=10) == [2] and queued.result(timeout=10) == [6]
    assert sum(model.batch_sizes) == 2  # 100 was never doubled
    assert batcher._in_flight == 0
