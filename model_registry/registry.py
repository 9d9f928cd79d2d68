"""The registry: public (task, model name) -> a loaded model, through the cache."""

import logging
import threading

from app.errors import ModelUnavailable, NotFound

from .cache import ModelCache
from .catalogue import MODELS, TASK_MODELS, default_name
from .device import pick_device, use_half_precision
from .loaders import loader_for
from .resolve import resolve_model_dir
from .served_model import ServedModel

log = logging.getLogger(__name__)


class ModelRegistry:
    def __init__(self, config: dict, on_load=None, on_evict=None):
        self.model_dir = config["MODEL_DIR"]
        self.device = pick_device(config["DEVICE"])
        self.half = use_half_precision(config["HALF_PRECISION"], self.device)
        budget = int(config["MODEL_MEMORY_BUDGET_MB"]) * 2**20
        self.cache = ModelCache(self._load, budget, on_load=on_load, on_evict=on_evict)
        self.preload_done = threading.Event()
        self.preload_errors: dict[str, str] = {}

    def model_key(self, task: str, name: str | None) -> str:
        names = TASK_MODELS[task]
        name = name or default_name(task)
        try:
            return names[name]
        except KeyError:
            raise NotFound(
                f"Model {name!r} not found for {task}. Available: {', '.join(names)}."
            ) from None

    def get(self, task: str, name: str | None) -> ServedModel:
        return self.cache.get(self.model_key(task, name))

    def _load(self, key: str) -> ServedModel:
        spec = MODELS[key]
        public_names = sorted({n for names in TASK_MODELS.values() for n, k in names.items() if k == key})
        path, source = resolve_model_dir(spec, self.model_dir, public_names)
        log.info("loading model %s from %s (%s)", key, path, source)
        try:
            load = loader_for(spec)
        except LookupError as exc:
            raise ModelUnavailable(f"Model {key!r} cannot be served by this version: {exc}.") from None
        return load(spec, path, self.device, self.half)

    def preload(self, entries: list[str]) -> None:
        """Load 'task:name' pairs or model keys; errors are kept for /readyz."""
        try:
            for entry in entries:
                try:
                    if ":" in entry:
                        task, name = entry.split(":", 1)
                        self.get(task, name)
                    else:
                        if entry not in MODELS:
                            raise NotFound(f"unknown model {entry!r}; known: {', '.join(MODELS)}")
                        self.cache.get(entry)
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
