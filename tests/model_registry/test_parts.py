"""A request of more items than a pass holds runs as parts that take turns with
other accounts' requests (model_registry/served_model.py _run_in_parts)."""

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest

from model_registry.served_model import PARTS_IN_FLIGHT, ServedModel

from .test_batcher import WAIT_S, Doubler, Gate
from .test_fair_share import as_account


def served(model, max_batch_size: int) -> ServedModel:
    served = ServedModel("double", None, 0, "cpu", {"double": model})
    served.batch_settings = dataclasses.replace(served.batch_settings, max_batch_size=max_batch_size,
                                                run_alone_inline=False, timeout_s=WAIT_S)
    return served


def test_a_large_request_runs_as_parts_in_order_and_another_accounts_request_runs_between_them():
    model = Doubler(Gate())
    double = served(model, max_batch_size=4)
    with ThreadPoolExecutor(1) as pool:
        large = pool.submit(as_account, "indexer", double.run, "double", list(range(40)))  # 10 parts
        model.wait_started(1)
        quiet = as_account("quiet", double._batcher("double").submit_nowait, [100], WAIT_S)
        model.gate.open()
        assert large.result(WAIT_S) == [2 * i for i in range(40)]
        assert quiet.result(WAIT_S) == [200]
    # Never more than a pass's items of the large request at once, and the quiet
    # request ran in the second pass, not after the large request's 10 parts.
    assert all(len(batch) <= 4 for batch in model.batches)
    assert any(100 in batch for batch in model.batches[:3]), model.batches
    assert sorted(item for batch in model.batches for item in batch) == sorted([*range(40), 100])


def test_at_most_parts_in_flight_are_queued_at_once():
    model = Doubler(Gate())
    double = served(model, max_batch_size=2)
    batcher = double._batcher("double")
    with ThreadPoolExecutor(1) as pool:
        large = pool.submit(as_account, "indexer", double.run, "double", list(range(20)))
        model.wait_started(1)
        # One part running, the next waiting ready: the other 8 are not in the queue yet.
        assert batcher.queued() == PARTS_IN_FLIGHT - 1
        model.gate.open()
        assert large.result(WAIT_S) == [2 * i for i in range(20)]


def test_a_failing_part_fails_the_request_and_the_parts_after_it_never_run():
    model = Doubler(Gate())
    double = served(model, max_batch_size=2)
    with ThreadPoolExecutor(1) as pool:
        large = pool.submit(as_account, "indexer", double.run, "double", [1, 2, "bad", 4, 5, 6, 7, 8, 9, 10])
        model.gate.open()
        with pytest.raises(Exception):
            large.result(WAIT_S)
    ran = [item for batch in model.batches for item in batch]
    assert 9 not in ran and 10 not in ran  # queued only as earlier parts finish
