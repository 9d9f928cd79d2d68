"""Serve a built user model: its code in its worker process, or a plain Hugging Face
folder through the built-in loaders (no user code runs at all)."""

import os
import time

from core.settings import Settings
from model_registry.catalogue import SENTENCE_TRANSFORMER, SEQ2SEQ, UPLOADED, ModelSpec
from model_registry.loaders import DEFAULT_SETTINGS, LOADERS, LoadSettings, completion
from model_registry.served_model import Capability, ServedModel
from tasks.spec import TASK_SPECS, task_spec  # importing tasks registers every task's spec

from .archive import tree_bytes
from .worker_client import WorkerProcess

KEY_PREFIX = "user-"


def cache_key(version_id: int) -> str:
    """A user model version's key in the model cache (never a catalogue key)."""
    return f"{KEY_PREFIX}{version_id}"


def version_dirs(data_dir: str, version_id: int) -> tuple[str, str]:
    """(the extracted files, the virtual environment) of a model version."""
    root = os.path.join(data_dir, "user_models", str(version_id))
    return os.path.join(root, "files"), os.path.join(root, "venv")


def hf_loader(tasks: list[str], files_dir: str, config: Settings) -> str:
    """Which built-in loader serves a Hugging Face folder declaring these tasks:
    a generator by its architecture (encoder-decoder or not), a reranker as a
    cross-encoder (a CrossEncoder's folder has a modules.json too), a
    sentence-transformers folder as one, else by the first declared task that a
    loader serves (its TaskSpec.hf_loader)."""
    if "text-generation" in tasks:
        return SEQ2SEQ if config.get("is_encoder_decoder") else task_spec("text-generation").hf_loader
    if "rerank" in tasks:
        return task_spec("rerank").hf_loader
    if os.path.isfile(os.path.join(files_dir, "modules.json")):
        return SENTENCE_TRANSFORMER
    for task in tasks:
        loader = task_spec(task).hf_loader
        if loader is not None:
            return loader
    servable = sorted(spec.name for spec in TASK_SPECS.values() if spec.hf_loader)
    raise ValueError(f"a Hugging Face folder can serve {', '.join(servable)}, not {tasks}")


def user_input(task: str, item):
    """One batch item as the user's code receives it: the request's fields for that item."""
    return task_spec(task).to_user_input(item)


def code_model(key: str, version_id: int, files_dir: str, venv_dir: str, model_format: str, tasks: list[str],
               config: Settings, model_sandbox) -> ServedModel:
    """A model whose pickle or code runs in its worker, in the version's sandbox."""
    worker = WorkerProcess(
        key,
        launch=lambda: model_sandbox.start_worker(version_id, files_dir, venv_dir, model_format),
        stop=model_sandbox.stop,
        call_timeout_s=config.worker_call_timeout_s,
        load_timeout_s=config.worker_load_timeout_s,
        max_reply_bytes=config.worker_max_reply_mb * 2**20,
        why_stopped=model_sandbox.stopped_because,
    )
    request_timeout_s = config.request_timeout_s

    def runner(task):
        # A batch's items go to the worker one after another: together they get
        # the request timeout, not the call timeout each (a batch of 32 slow items
        # would otherwise hold the batch's thread 32 times as long).
        def run(items):
            deadline = time.monotonic() + request_timeout_s
            return [worker.call(task, user_input(task, item), deadline=deadline) for item in items]
        return run

    # The worker's memory is outside this process; count the files as its weight.
    served = ServedModel(key, worker, tree_bytes(files_dir), "worker process", {task: runner(task) for task in tasks})
    served.on_close = worker.close
    return served.declare(uploaded_code=True)


def hf_model(key: str, files_dir: str, tasks: list[str], loader: str, device: str, half: bool,
             settings: LoadSettings = DEFAULT_SETTINGS) -> ServedModel:
    spec = ModelSpec(key, key, UPLOADED, loader, "user model")
    served = LOADERS[loader].load(spec, files_dir, device, half, settings)
    # A generation model's token-level runners (the /v1 routes: generating, scoring prompts) come with its task.
    runners = set(tasks) | (set(completion.ROUTE_RUNNERS) if completion.SERVES in tasks else set())
    served.runners = {task: run for task, run in served.runners.items() if task in runners}
    if Capability.COMPLETION in served.capabilities:
        served.completion.runs_chat_template = False  # uploaded Jinja is uploaded code
    return served
