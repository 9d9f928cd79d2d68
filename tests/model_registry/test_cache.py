"""ModelCache: one load under concurrency, LRU eviction within a budget, failed loads leave nothing."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from model_registry.cache import ModelCache
from model_registry.served_model import ServedModel

MiB = 2**20


class CountingLoader:
    def __init__(self, sizes=None, delay=0.0, fail=()):
        self.sizes = sizes or {}
        self.delay = delay
        self.fail = set(fail)
        self.calls = []
        self._lock = threading.Lock()

    def __call__(self, key):
        with self._lock:
            self.calls.append(key)
        time.sleep(self.delay)
        if key in self.fail:
            raise RuntimeError(f"cannot load {key}")
        return ServedModel(key, object(), self.sizes.get(key, MiB), "cpu", {"echo": lambda xs: xs})


def test_concurrent_first_requests_share_one_load():
    loader = CountingLoader(delay=0.2)
    cache = ModelCache(loader)
    barrier = threading.Barrier(8)

    def get(_):
        barrier.wait()
        return cache.get("m")

    with ThreadPoolExecutor(8) as pool:
        models = list(pool.map(get, range(8)))

    assert loader.calls == ["m"]
    assert all(model is models[0] for model in models)


def test_least_recently_used_model_is_evicted_first():
    evicted = []
    cache = ModelCache(CountingLoader(sizes={"a": 4 * MiB, "b": 4 * MiB, "c": 4 * MiB}), 10 * MiB, on_evict=evicted.append)
    cache.get("a")
    cache.get("b")
    cache.get("a")  # a is now more recent than b

    cache.get("c")

    assert [m.key for m in evicted] == ["b"]
    assert cache.loaded() == ["a", "c"]
    assert cache.used_bytes() == 8 * MiB


def test_a_model_larger_than_the_budget_loads_alone():
    cache = ModelCache(CountingLoader(sizes={"small": MiB, "huge": 50 * MiB}), 10 * MiB)
    cache.get("small")
    cache.get("huge")
    assert cache.loaded() == ["huge"]


def test_no_budget_means_no_eviction():
    cache = ModelCache(CountingLoader(sizes={"a": 10**12, "b": 10**12}), 0)
    cache.get("a")
    cache.get("b")
    assert cache.loaded() == ["a", "b"]


def test_a_failed_load_registers_nothing_and_the_next_request_retries():
    loader = CountingLoader(fail={"bad"}, delay=0.1)
    cache = ModelCache(loader)
    errors = []

    def get(_):
        try:
            cache.get("bad")
        except RuntimeError as exc:
            errors.append(str(exc))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(get, range(4)))

    assert errors == ["cannot load bad"] * 4
    assert cache.loaded() == []
    with pytest.raises(RuntimeError):
        cache.get("bad")
    assert len(loader.calls) == 2


def test_load_callback_sees_each_load_once():
    loads = []
    cache = ModelCache(CountingLoader(), on_load=lambda model, seconds: loads.append(model.key))
    cache.get("a")
    cache.get("a")
    assert loads == ["a"]
