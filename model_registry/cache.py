"""The cache of loaded models: load once, keep within a memory budget, evict LRU.

Concurrent first requests for one model share one load: the first caller loads,
the others wait on the same Future. A failed load registers nothing and every
waiter sees the error; the next request tries again. Once a model is registered,
the on_load and on_evict callbacks (metrics, closing workers) cannot take it
from its waiters: their failures are logged. Eviction drops the cache's
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
        model = None
        try:
            model = load(key)
            with self._lock:
                evicted = self._make_room(model.nbytes)
                self._models[key] = model
                del self._loading[key]
        except BaseException as exc:
            with self._lock:
                self._loading.pop(key, None)
            if model is not None:
                _close_quietly(model)  # loaded but never registered: free its worker or memory now
            pending.set_exception(exc)
            raise
        seconds = time.perf_counter() - started
        # The model is registered: whatever the callbacks do, the waiters get it.
        try:
            for old in evicted:
                log.info("unloaded model %s (%.0f MiB) to stay within the memory budget", old.key, old.nbytes / 2**20)
                _call_quietly("on_evict", self._on_evict, old)
            log.info("loaded model %s on %s in %.1fs (%.0f MiB)", key, model.device, seconds, model.nbytes / 2**20)
            _call_quietly("on_load", self._on_load, model, seconds)
        finally:
            pending.set_result(model)
        return model

    def _make_room(self, incoming: int) -> list[ServedModel]:
        """Evict least recently used models until `incoming` fits (lock held).

        A model larger than the whole budget still loads, alone: refusing it
        would make the service unusable with a misjudged budget. The victims are
        chosen before any is removed, so a failure here leaves the cache as it was.
        """
        if not self.budget_bytes:
            return []
        used = self.used_bytes()
        victims = []
        for key, old in self._models.items():
            if used + incoming <= self.budget_bytes:
                break
            victims.append(key)
            used -= old.nbytes
        return [self._models.pop(key) for key in victims]

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


def _call_quietly(name: str, callback, *args) -> None:
    """Run a load/evict callback (metrics, closing a worker); its failure is logged,
    never passed on: the cache's state is already decided and requests must go on."""
    try:
        callback(*args)
    except Exception:
        log.exception("the model cache's %s callback failed for %s", name, args[0].key)


def _close_quietly(model: ServedModel) -> None:
    try:
        model.close()
    except Exception:
        log.exception("closing model %s after its failed registration", model.key)
