"""The registry: the catalogue's models (and, under their own keys, user models'
versions) loaded once, held by the cache within the memory budget.

Which model a request's name stands for is uploads/resolver.py's answer; the
registry says only what the catalogue calls it (catalogue_key)."""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import ModelUnavailable, NotFound
from core.settings import Settings

from .cache import ModelCache
from .catalogue import MODELS, TASK_MODELS, default_name, public_names
from .device import pick_device, use_half_precision
from .loaders import LoadSettings, loader_for
from .loaders.common import MissingWeights
from .resolve import resolve_model_dir
from .served_model import BatchSettings, ServedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    """Where and how this process loads a model: what a user model's version
    needs to load as the catalogue's models do."""

    device: str
    half: bool
    settings: LoadSettings


class ModelRegistry:
    def __init__(self, config: Settings, on_load=None, on_evict=None, on_batch=None):
        self.model_dir = config.model_dir
        self.batch_settings = BatchSettings(
            max_batch_size=config.batch_max_size,
            max_wait_s=config.batch_max_wait_ms / 1000,
            max_queue=config.batch_max_queue,
            timeout_s=config.request_timeout_s,
            # With several torch threads, every thread that runs a forward pass
            # gets its own OpenMP team; passes must then stay on the batch worker.
            run_alone_inline=config.torch_threads == 1,
            max_batch_tokens=config.batch_max_tokens,
            on_batch=on_batch,
        )
        # What a loaded model's answers depend on, given at load time.
        self.load_settings = LoadSettings.from_config(config)
        self.device = pick_device(config.device)
        self.half = use_half_precision(config.half_precision, self.device)
        budget = config.model_memory_budget_mb * 2**20
        self.cache = ModelCache(self._load, budget, on_load=on_load, on_evict=self._evicted(on_evict))
        self.preload_done = threading.Event()
        self.preload_errors: dict[str, str] = {}

    @staticmethod
    def names(task: str) -> dict[str, str]:
        """The task's global model names (empty for tasks only user models serve)."""
        return TASK_MODELS.get(task, {})

    @staticmethod
    def catalogue_key(task: str, name: str | None) -> str | None:
        """The catalogue model `name` stands for in `task`: the key of a model that
        serves it (what GET /v1/models lists), or one of the task's public names;
        None (no name) is the task's default. None when it is neither: not a
        global model of the task."""
        names = TASK_MODELS.get(task, {})
        if name is None:
            return names[default_name(task)] if names else None
        if name in names.values():  # a catalogue key, as /v1 and Backprop's local model names use them
            return name
        return names.get(name)

    def model_key(self, task: str, name: str | None) -> str:
        key = self.catalogue_key(task, name)
        if key is None:
            raise NotFound(
                f"Model {name!r} not found for {task}. Available: {', '.join(self.names(task))}."
            )
        return key

    def get(self, task: str, name: str | None) -> ServedModel:
        """A catalogue model by task and name (a 404 listing the task's names)."""
        return self.load(self.model_key(task, name))

    def load(self, key: str) -> ServedModel:
        """The catalogue model `key`, loaded once and kept in the cache."""
        return self.cache.get(key)

    @property
    def placement(self) -> Placement:
        return Placement(self.device, self.half, self.load_settings)

    def load_other(self, key: str, load: Callable[[Placement], ServedModel]) -> ServedModel:
        """A model the catalogue does not list (a user model's version), under its
        own `key`: loaded once by `load` where the catalogue's load, batched with
        the same settings, and held by the same cache within the same budget."""
        def load_placed(_key: str) -> ServedModel:
            served = load(self.placement)
            served.batch_settings = self.batch_settings
            return served

        return self.cache.get(key, load=load_placed)

    def loaded_keys(self) -> list[str]:
        return self.cache.loaded()

    def unload(self, key: str) -> None:
        self.cache.evict(key)

    def _load(self, key: str) -> ServedModel:
        spec = MODELS[key]
        path, source = resolve_model_dir(spec, self.model_dir, public_names(key))
        log.info("loading model %s from %s (%s)", key, path, source)
        try:
            served = loader_for(spec)(spec, path, self.device, self.half, self.load_settings)
        except MissingWeights as exc:  # the operator's files are wrong: say which, as for a missing model
            raise ModelUnavailable(f"Model {key} cannot be served from {path}: {exc}") from None
        served.batch_settings = self.batch_settings
        log.info("model %s runs on %s", key, served.backend)
        return served

    @staticmethod
    def _evicted(callback):
        def on_evict(model: ServedModel) -> None:
            model.close()
            if callback:
                callback(model)

        return on_evict

    def preload_key(self, entry: str) -> str:
        """The model key of a preload entry: a 'task:name' pair or a model key."""
        if ":" in entry:
            task, name = entry.split(":", 1)
            if task not in TASK_MODELS:
                raise NotFound(f"unknown task {task!r} in {entry!r}; known: {', '.join(TASK_MODELS)}")
            return self.model_key(task, name)
        if entry not in MODELS:
            raise NotFound(f"unknown model {entry!r}; known: {', '.join(MODELS)}")
        return entry

    def preload(self, entries: list[str]) -> None:
        """Load 'task:name' pairs or model keys; errors are kept for /readyz."""
        try:
            for entry in entries:
                try:
                    self.cache.get(self.preload_key(entry))
                except Exception as exc:  # keep going: one bad entry must not block the rest
                    log.error("preloading %s failed: %s", entry, exc)
                    self.preload_errors[entry] = str(exc)
        finally:
            self.preload_done.set()

    def start_preload(self, entries: list[str]) -> None:
        if not entries:
            self.preload_done.set()
            return
        threading.Thread(target=self.preload, args=(entries,), name="preload", daemon=True).start()
