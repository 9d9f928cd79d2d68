"""Token-aware batching: passes cut by a token budget into runs of similar lengths, each
request answered in its own order, inputs prepared on the request's thread.

Items here are strings whose token count is their length; the model records the
passes it saw. As in test_batcher.py, a gate orders the passes, not sleeps.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from model_registry.batcher import Batcher, PredictionFailed
from model_registry.token_batching import PreparedRunner, Tokens, collate, plan_passes, split_rows

from .test_batcher import WAIT_S, Gate


class Upper:
    """Upper-cases strings (fails on "bad"); records each pass; with a gate, each pass waits there."""

    def __init__(self, gate: Gate | None = None):
        self.gate = gate
        self.batches = []
        self.started = threading.Event()

    def __call__(self, items):
        self.batches.append(list(items))
        self.started.set()
        if self.gate is not None:
            self.gate.wait()
        if "bad" in items:
            raise ValueError("cannot upper-case 'bad'")
        return [item.upper() for item in items]


def queue_behind_a_running_pass(batcher, model, requests):
    """Hold the model in a first pass, queue `requests` behind it, then let all through:
    the queued ones are taken off the queue as one batch."""
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(batcher.submit, ["z"], WAIT_S)
        assert model.started.wait(WAIT_S)
        futures = [batcher.submit_nowait(items, WAIT_S) for items in requests]
        model.gate.open()
        assert first.result(WAIT_S) == ["Z"]
        return [future.result(WAIT_S) for future in futures]


MIXED = [["xxxxxxxx", "a"], ["bb", "cccc"], ["ddd", "e" * 13]]


def test_a_batch_of_mixed_lengths_is_cut_by_the_token_budget_into_runs_of_similar_length():
    model = Upper(Gate())
    batcher = Batcher(model, "upper", max_batch_size=8, item_tokens=len, max_batch_tokens=12)

    results = queue_behind_a_running_pass(batcher, model, MIXED)

    assert results == [["XXXXXXXX", "A"], ["BB", "CCCC"], ["DDD", "E" * 13]]  # each in its own order
    assert model.batches[1:] == [
        ["a", "bb", "ddd"],  # 3 items x 3 tokens = 9 <= 12; adding "cccc" would make 4 x 4 = 16
        ["cccc"],  # with "xxxxxxxx": 2 x 8 = 16 > 12
        ["xxxxxxxx"],
        ["e" * 13],  # longer than the budget: alone
    ]


def test_without_a_budget_the_batch_is_one_pass_in_arrival_order():
    model = Upper(Gate())
    batcher = Batcher(model, "upper", max_batch_size=8, item_tokens=len, max_batch_tokens=0)

    results = queue_behind_a_running_pass(batcher, model, MIXED)

    assert results == [["XXXXXXXX", "A"], ["BB", "CCCC"], ["DDD", "E" * 13]]
    assert model.batches[1:] == [["xxxxxxxx", "a", "bb", "cccc", "ddd", "e" * 13]]


def test_passes_also_stay_within_the_item_count():
    model = Upper(Gate())
    batcher = Batcher(model, "upper", max_batch_size=2, item_tokens=len, max_batch_tokens=10_000)

    # One request of five items: more than a pass may hold, cut, and answered in its order.
    results = queue_behind_a_running_pass(batcher, model, [["ccc", "a", "eeeee", "bb", "dddd"]])

    assert results == [["CCC", "A", "EEEEE", "BB", "DDDD"]]
    assert model.batches[1:] == [["a", "bb"], ["ccc", "dddd"], ["eeeee"]]


def test_a_failed_pass_fails_only_the_request_with_the_bad_input():
    model = Upper(Gate())
    batcher = Batcher(model, "upper", max_batch_size=8, item_tokens=len, max_batch_tokens=8)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(batcher.submit, ["z"], WAIT_S)
        assert model.started.wait(WAIT_S)
        good = batcher.submit_nowait(["ok", "fine"], WAIT_S)
        bad = batcher.submit_nowait(["bad", "also"], WAIT_S)
        model.gate.open()
        assert first.result(WAIT_S) == ["Z"]
        assert good.result(WAIT_S) == ["OK", "FINE"]
        with pytest.raises(PredictionFailed):
            bad.result(WAIT_S)
    # Planned: [ok bad] (2 x 3 tokens), [fine also] (2 x 4). The first failed, so its
    # two requests are each run again alone, and the second pass, only theirs, is not run.
    assert model.batches[1:] == [["ok", "bad"], ["ok", "fine"], ["bad", "also"]]


def test_inputs_are_prepared_on_the_submitting_thread_and_the_model_gets_them_prepared():
    prepared_on, run_on = [], []

    def prepare(texts):
        prepared_on.append(threading.current_thread().name)
        return [Tokens({"input_ids": [1] * len(text)}) for text in texts]

    def run(items):
        run_on.append(threading.current_thread().name)
        return [len(item) for item in items]

    runner = PreparedRunner(prepare, run)
    batcher = Batcher(runner.run, "count", run_alone_inline=False, prepare=runner.prepare,
                      item_tokens=runner.tokens, max_batch_tokens=64)
    with ThreadPoolExecutor(1, thread_name_prefix="request") as pool:
        assert pool.submit(batcher.submit, ["abc", "a"], WAIT_S).result(WAIT_S) == [3, 1]
    assert prepared_on[0].startswith("request") and run_on == ["batcher-count"]
    # Called directly on task inputs (a build's sample run), the runner prepares them itself.
    assert runner(["abcd"]) == [4]


@pytest.mark.parametrize("side", ["right", "left"])
def test_rows_cut_from_a_padded_batch_pad_back_to_the_same_batch(side):
    pad = [0, 0]
    rows = [[101, 7, 102], [101, 7, 8, 9, 102]]
    padded = [pad[: 5 - len(row)] + row if side == "left" else row + pad[: 5 - len(row)] for row in rows]
    masks = [[int(token != 0) for token in row] for row in padded]
    encoded = {"input_ids": padded, "attention_mask": masks}

    items = split_rows(encoded, side)

    assert [item.ids["input_ids"] for item in items] == rows and [len(item) for item in items] == [3, 5]
    batch = collate(items, {"input_ids": 0, "attention_mask": 0}, side)
    assert np.array_equal(batch["input_ids"], np.array(padded))
    assert np.array_equal(batch["attention_mask"], np.array(masks))


def test_plan_keeps_arrival_order_among_equal_lengths():
    assert plan_passes([[2, 2], [2]], max_items=2, max_tokens=100) == [[(0, 0), (0, 1)], [(1, 0)]]
