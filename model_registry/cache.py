"""The cache of loaded models: load once, keep within a memory budget, evict LRU.

Concurrent first requests for one model share one load: the first caller loads,
the others wait on the same Future. A failed load registers nothing and every
waiter sees the error; the next request tries again. Eviction drops the cache's
reference; a request still holding the model finishes with it, and the memory
is freed when the last reference goes.
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from .served_model import ServedModel

log = logging.getLogger(__name__)


class ModelCache:
    def __init__(
        self,
        load: Callable[[str], ServedModel],
        budget_bytes: int = 0,
        on_load: Callable[[ServedModel, float], None] | None = None,
        on_evict: Callable[[ServedModel], None] | None = None,
    ):
        self._load = load
        self.budget_bytes = budget_bytes
        self._on_load = on_load or (lambda model, seconds: None)
        self._on_evict = on_evict or (lambda model: None)
        self._lock = threading.Lock()
        self._models: OrderedDict[str, ServedModel] = OrderedDict()  # oldest use first
        self._loading: dict[str, Future] = {}

    def get(self, key: str, load: Callable[[str], ServedModel] | None = None) -> ServedModel:
        """The loaded model for `key`, loading it (with `load`, else the cache's loader) if need be."""
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            pending = self._loading.get(key)
            owner = pending is None
            if owner:
                pending = self._loading[key] = Future()
        if not owner:
            return pending.result()
        return self._load_as_owner(key, pending, load or self._load)

    def _load_as_owner(self, key: str, pending: Future, load) -> ServedModel:
        started = time.perf_counter()
        try:
            model = load(key)
        except BaseException as exc:
            with self._lock:
                del self._loading[key]
            pending.set_exception(exc)
            raise
        seconds = time.perf_counter() - started
        with self._lock:
            evicted = self._make_room(model.nbytes)
            self._models[key] = model
            del self._loading[key]
        for old in evicted:
            log.info("unloaded model %s (%.0f MiB) to stay within the memory budget", old.key, old.nbytes / 2**20)
            self._on_evict(old)
        log.info("loaded model %s on %s in %.1fs (%.0f MiB)", key, model.device, seconds, model.nbytes / 2**20)
        self._on_load(model, seconds)
        pending.set_result(model)
        return model

    def _make_room(self, incoming: int) -> list[ServedModel]:
        """Evict least recently used models until `incoming` fits (lock held).

        A model larger than the whole budget still loads, alone: refusing it
        would make the service unusable with a misjudged budget.
        """
        evicted = []
        if not self.budget_bytes:
            return evicted
        while self._models and self.used_bytes() + incoming > self.budget_bytes:
            _key, old = self._models.popitem(last=False)
            evicted.append(old)
        return evicted

    def evict(self, key: str) -> None:
        """Drop one model now (its files are gone)."""
        with self._lock:
            model = self._models.pop(key, None)
        if model is not None:
            self._on_evict(model)

    def used_bytes(self) -> int:
        return sum(model.nbytes for model in self._models.values())

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def peek(self, key: str) -> ServedModel | None:
        with self._lock:
            return self._models.get(key)
