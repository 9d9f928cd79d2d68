"""Accounts share a model's batcher fairly: batches are filled round-robin across
accounts, and an account may have at most its share of the queue waiting.

As in test_batcher.py, events order these tests (a model held at a gate), not sleeps.
"""

import contextvars
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.errors import TooManyRequests
from core.fair_queue import FairQueue
from core.request_context import current_account
from model_registry.batcher import Batcher

from .test_batcher import WAIT_S, Doubler, Gate, batcher_with_clock


def as_account(account, call, *args):
    """Run `call` with the request's account set, as web/auth.py sets it for a request."""
    context = contextvars.copy_context()
    context.run(current_account.set, account)
    return context.run(call, *args)


def occupied(batcher, model, pool):
    """A request of nobody's holds the model at its gate; the rest of the test queues behind it."""
    running = pool.submit(batcher.submit, [0], WAIT_S)
    model.wait_started(1)
    return running


def test_a_flooding_account_does_not_delay_another_accounts_request_past_the_next_pass():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_batch_size=4)
    with ThreadPoolExecutor(1) as pool:
        running = occupied(batcher, model, pool)
        flood = [as_account("flood", batcher.submit_nowait, [i, i], WAIT_S) for i in range(1, 11)]  # 20 items
        victim = as_account("victim", batcher.submit_nowait, [100], WAIT_S)
        model.gate.open()
        assert victim.result(WAIT_S) == [200]
        assert [f.result(WAIT_S) for f in flood] == [[2 * i, 2 * i] for i in range(1, 11)]
        running.result(WAIT_S)
    # Behind 10 of the flood's requests, the victim's is in the first pass after the one running.
    assert 100 in model.batches[1]
    assert all(len(batch) <= 4 for batch in model.batches)


def test_a_quiet_accounts_request_runs_in_a_small_pass_before_the_floods_items():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_batch_size=8)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(as_account, "flood", batcher.submit, [0], WAIT_S)
        model.wait_started(1)
        flood = [as_account("flood", batcher.submit_nowait, [i, i], WAIT_S) for i in (1, 2)]
        victim = as_account("victim", batcher.submit_nowait, [100], WAIT_S)
        model.gate.open()
        assert victim.result(WAIT_S) == [200] and [f.result(WAIT_S) for f in flood] == [[2, 2], [4, 4]]
        running.result(WAIT_S)
    # One batch (5 items), run as two passes: the quiet account's first.
    assert model.batches[1:] == [[100], [1, 1, 2, 2]]


def test_while_another_account_uses_the_model_a_flood_takes_its_share_of_each_batch():
    model = Doubler(Gate())
    batcher, clock = batcher_with_clock(model, "double", max_batch_size=8)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(as_account, "flood", batcher.submit, [0], WAIT_S)
        model.wait_started(1)
        assert as_account("quiet", batcher.submit_nowait, [100], WAIT_S)  # a moment ago, now answered
        flood = [as_account("flood", batcher.submit_nowait, [i, i], WAIT_S) for i in range(1, 7)]
        model.gate.let_through(2)  # the pass running, and the quiet request's own
        model.wait_started(3)
        # Two accounts used the model lately: the flood's batches are half a batch (4 items).
        assert model.batches[2] == [1, 1, 2, 2]
        clock.now += 2  # the quiet account has been gone longer than RECENT_S
        model.gate.open()
        assert [f.result(WAIT_S) for f in flood] == [[2 * i, 2 * i] for i in range(1, 7)]
        running.result(WAIT_S)
    # Alone again, the flood takes whole batches.
    assert model.batches[3:] == [[3, 3, 4, 4, 5, 5, 6, 6]]


def test_accounts_of_similar_weight_share_one_pass():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_batch_size=8)
    with ThreadPoolExecutor(1) as pool:
        running = occupied(batcher, model, pool)
        futures = [as_account(account, batcher.submit_nowait, [n, n], WAIT_S) for account, n in (("a", 1), ("b", 2))]
        model.gate.open()
        assert [f.result(WAIT_S) for f in futures] == [[2, 2], [4, 4]]
        running.result(WAIT_S)
    assert model.batches[1:] == [[1, 1, 2, 2]]


def test_batches_take_one_request_per_account_in_turn():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_batch_size=64)
    with ThreadPoolExecutor(1) as pool:
        running = occupied(batcher, model, pool)
        futures = [as_account("a", batcher.submit_nowait, [n], WAIT_S) for n in (1, 2, 3)]
        futures += [as_account("b", batcher.submit_nowait, [n], WAIT_S) for n in (11, 12)]
        futures += [as_account("c", batcher.submit_nowait, [21], WAIT_S)]
        model.gate.open()
        assert [f.result(WAIT_S) for f in futures] == [[2], [4], [6], [22], [24], [42]]
        running.result(WAIT_S)
    # Arrival order would be 1 2 3 11 12 21; round-robin interleaves the accounts.
    assert model.batches[1] == [1, 11, 21, 2, 12, 3]


def test_a_request_too_large_for_the_room_left_waits_while_smaller_ones_of_others_go():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_batch_size=4)
    with ThreadPoolExecutor(1) as pool:
        running = occupied(batcher, model, pool)
        big = as_account("big", batcher.submit_nowait, [1, 2, 3], WAIT_S)
        wide = as_account("wide", batcher.submit_nowait, [4, 5], WAIT_S)
        small = as_account("small", batcher.submit_nowait, [6], WAIT_S)
        model.gate.open()
        assert big.result(WAIT_S) == [2, 4, 6] and wide.result(WAIT_S) == [8, 10] and small.result(WAIT_S) == [12]
        running.result(WAIT_S)
    # The first batch takes big and small (wide does not fit), the small request's pass first;
    # no request is split, no pass is over 4 items.
    assert model.batches[1:] == [[6], [1, 2, 3], [4, 5]]


def test_an_account_alone_may_fill_the_queue_and_then_must_share_it():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_queue=4)
    with ThreadPoolExecutor(1) as pool:
        running = occupied(batcher, model, pool)
        flood = [as_account("flood", batcher.submit_nowait, [n], WAIT_S) for n in range(1, 5)]  # the whole queue
        with pytest.raises(TooManyRequests) as refused:
            as_account("flood", batcher.submit_nowait, [5], WAIT_S)
        assert refused.value.headers["Retry-After"] == "1"
        assert "your share of its queue" in refused.value.message
        # The queue is full, yet another account gets in: its share is half of it.
        victims = [as_account("victim", batcher.submit_nowait, [n], WAIT_S) for n in (100, 101)]
        with pytest.raises(TooManyRequests) as second_refusal:
            as_account("victim", batcher.submit_nowait, [102], WAIT_S)  # past its half
        assert "shared with 1 other account" in second_refusal.value.message
        model.gate.open()
        assert [f.result(WAIT_S) for f in victims] == [[200], [202]]
        assert [f.result(WAIT_S) for f in flood] == [[2], [4], [6], [8]]
        running.result(WAIT_S)
    assert 5 not in [item for batch in model.batches for item in batch]


def test_the_queue_as_a_whole_is_bounded_however_many_accounts_join():
    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_queue=4)
    with ThreadPoolExecutor(1) as pool:
        running = occupied(batcher, model, pool)
        admitted, refused = [], 0
        for account in range(40):  # each new account has a share of at least one
            try:
                admitted.append(as_account(account, batcher.submit_nowait, [account], WAIT_S))
            except TooManyRequests:
                refused += 1
        assert batcher.queued() == 8 and len(admitted) == 8 and refused == 32  # twice BATCH_MAX_QUEUE at most
        model.gate.open()
        assert [f.result(WAIT_S) for f in admitted] == [[2 * n] for n in range(8)]
        running.result(WAIT_S)


def test_a_refused_request_is_never_prepared():
    prepared = []

    def prepare(items):
        prepared.append(list(items))
        return items

    model = Doubler(Gate())
    batcher = Batcher(model, "double", max_queue=1, prepare=prepare)
    with ThreadPoolExecutor(1) as pool:
        running = occupied(batcher, model, pool)
        queued = as_account("a", batcher.submit_nowait, [1], WAIT_S)
        with pytest.raises(TooManyRequests):
            as_account("a", batcher.submit_nowait, [2], WAIT_S)
        model.gate.open()
        assert queued.result(WAIT_S) == [2]
        running.result(WAIT_S)
    assert [2] not in prepared  # refused before its tokenising cost anything


def test_cancelled_requests_are_skipped_within_their_account():
    class Request:
        def __init__(self, items, wanted=True):
            self.items, self.wanted = items, wanted

    queue = FairQueue()
    first, dropped, kept = Request([1]), Request([2], wanted=False), Request([3])
    queue.append("a", first)
    queue.append("a", dropped)
    queue.append("a", kept)
    assert queue.take(1, lambda r: r.wanted) == [first]
    assert queue.take(8, lambda r: r.wanted) == [kept]
    assert len(queue) == 0 and queue.items() == 0 and queue.accounts() == 0
