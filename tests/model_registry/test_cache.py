"""ModelCache: one load under concurrency, LRU eviction within a budget, failed loads leave nothing."""

import threading
from concurrent.futures import Future

import pytest

from model_registry.cache import ModelCache
from model_registry.served_model import ServedModel

MiB = 2**20


class CountingLoader:
    def __init__(self, sizes=None, fail=()):
        self.sizes = sizes or {}
        self.fail = set(fail)
        self.calls = []
        self._lock = threading.Lock()

    def __call__(self, key):
        with self._lock:
            self.calls.append(key)
        if key in self.fail:
            raise RuntimeError(f"cannot load {key}")
        return ServedModel(key, object(), self.sizes.get(key, MiB), "cpu", {"echo": lambda xs: xs})


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


def test_load_callback_sees_each_load_once():
    loads = []
    cache = ModelCache(CountingLoader(), on_load=lambda model, seconds: loads.append(model.key))
    cache.get("a")
    cache.get("a")
    assert loads == ["a"]


# A safety net, not a timing assertion: a thread still blocked after this long is
# waiting forever, and the test fails instead of hanging the suite.
STUCK_S = 30


class Gate:
    """A loader that blocks until released, and a Future whose result() says when a
    waiter has reached it, so a test can line up owner and waiter without sleeps."""

    def __init__(self, monkeypatch, fail: bool = False):
        self.loading = threading.Event()
        self.release = threading.Event()
        self.waiting = threading.Event()
        # One release per waiter that has reached the owner's Future.
        self.waiters = threading.Semaphore(0)
        self.fail = fail
        self.calls = 0
        gate = self

        class SignallingFuture(Future):
            def result(self, timeout=None):
                gate.waiting.set()
                gate.waiters.release()
                return super().result(timeout)

        monkeypatch.setattr("model_registry.cache.Future", SignallingFuture)

    def __call__(self, key):
        self.calls += 1
        self.loading.set()
        assert self.release.wait(STUCK_S)
        if self.fail:
            raise RuntimeError(f"cannot load {key}")
        return ServedModel(key, object(), MiB, "cpu", {"echo": lambda xs: xs})


def get_in_thread(cache, key):
    """Start cache.get(key) in a thread; finish() joins it and returns (model, error)."""
    outcome = {}

    def run():
        try:
            outcome["model"] = cache.get(key)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def finish():
        thread.join(STUCK_S)
        assert not thread.is_alive(), f"cache.get({key!r}) is still waiting"
        return outcome.get("model"), outcome.get("error")

    return finish


def owner_and_waiter(cache, gate, key="m"):
    """Run one loading get and one waiting get of `key`; their (model, error) pairs."""
    owner = get_in_thread(cache, key)
    assert gate.loading.wait(STUCK_S)
    waiter = get_in_thread(cache, key)
    assert gate.waiting.wait(STUCK_S)
    gate.release.set()
    return owner(), waiter()


def test_a_failing_load_callback_still_hands_the_model_to_everyone(monkeypatch, caplog):
    gate = Gate(monkeypatch)

    def on_load(model, seconds):
        raise RuntimeError("metrics are down")

    cache = ModelCache(gate, on_load=on_load)

    (owned, owner_error), (waited, waiter_error) = owner_and_waiter(cache, gate)

    assert owner_error is None and waiter_error is None
    assert owned is waited and owned.key == "m"
    assert cache.get("m") is owned and gate.calls == 1  # registered: the next request does not reload
    assert "on_load callback failed for m" in caplog.text and "metrics are down" in caplog.text


def test_a_failing_evict_callback_still_registers_the_new_model(monkeypatch, caplog):
    evicted = []

    def on_evict(model):
        evicted.append(model.key)
        raise RuntimeError("the worker would not stop")

    loader = CountingLoader(sizes={"a": 4 * MiB, "b": 4 * MiB, "c": 4 * MiB})
    cache = ModelCache(loader, 8 * MiB, on_evict=on_evict)
    cache.get("a")
    cache.get("b")

    model = cache.get("c")  # a and b cannot both stay: a goes

    assert model.key == "c"
    assert evicted == ["a"]
    assert cache.loaded() == ["b", "c"]
    assert cache.get("c") is model and loader.calls == ["a", "b", "c"]
    assert "on_evict callback failed for a" in caplog.text


def test_a_failure_while_making_room_fails_everyone_and_the_next_request_loads(monkeypatch):
    gate = Gate(monkeypatch)
    closed = []
    cache = ModelCache(gate, budget_bytes=10 * MiB)
    real_make_room = cache._make_room

    def broken_make_room(incoming):
        monkeypatch.setattr(cache, "_make_room", real_make_room)  # fail once
        raise RuntimeError("bookkeeping broke")

    monkeypatch.setattr(cache, "_make_room", broken_make_room)
    monkeypatch.setattr(ServedModel, "close", lambda model: closed.append(model.key))

    (owned, owner_error), (waited, waiter_error) = owner_and_waiter(cache, gate)

    assert owned is None and waited is None
    assert str(owner_error) == str(waiter_error) == "bookkeeping broke"
    assert closed == ["m"]  # loaded but never registered: released, not leaked
    assert cache.loaded() == []
    model, error = get_in_thread(cache, "m")()
    assert error is None and model.key == "m" and gate.calls == 2
    assert cache.loaded() == ["m"]


def owner_and_waiters(cache, gate, count: int, key="m"):
    """One loading get and `count` gets that wait on its load, all lined up before
    the load finishes; their (model, error) pairs, the owner's first."""
    owner = get_in_thread(cache, key)
    assert gate.loading.wait(STUCK_S)
    waiters = [get_in_thread(cache, key) for _ in range(count)]
    for _ in range(count):
        assert gate.waiters.acquire(timeout=STUCK_S)
    gate.release.set()
    return [owner(), *(waiter() for waiter in waiters)]


def test_concurrent_first_requests_share_one_load(monkeypatch):
    gate = Gate(monkeypatch)
    cache = ModelCache(gate)

    outcomes = owner_and_waiters(cache, gate, count=7)

    assert gate.calls == 1
    assert all(error is None for _model, error in outcomes)
    assert all(model is outcomes[0][0] for model, _error in outcomes)


def test_a_failed_load_registers_nothing_and_the_next_request_retries(monkeypatch):
    gate = Gate(monkeypatch, fail=True)
    cache = ModelCache(gate)

    outcomes = owner_and_waiters(cache, gate, count=3)

    assert [str(error) for _model, error in outcomes] == ["cannot load m"] * 4  # the waiters share the failure
    assert gate.calls == 1
    assert cache.loaded() == []
    with pytest.raises(RuntimeError):
        cache.get("m")  # not registered as failed: it is tried again
    assert gate.calls == 2
