"""What a task is, declared once: its TaskSpec, beside the task's module.

Like transformers' SUPPORTED_TASKS, one entry holds everything the service needs
to know about a task, wherever it is needed: the HTTP route (the blueprint, with
its request schema), the key(s) of its answer, the sample a build runs a model
on and the check of the model's answer, the adapter from a batch item to what
uploaded code receives, the built-in loader that serves a Hugging Face folder
declaring the task, and the slot for its trainer (training).

A task module ends with ``SPEC = register(TaskSpec(...))``; the package imports
every task module (tasks/__init__.py), so a new task is one module plus its
catalogue rows. ``check_specs`` runs at import and fails with a message naming
what is missing, instead of a KeyError in a user's build.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def same_item(item):
    """The default adapter: uploaded code receives the batch item as it is."""
    return item


def any_answer(item, output) -> str | None:
    """The default answer check: anything JSON can carry."""
    return None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    # The task's HTTP route(s); its request schema is the one its view declares.
    blueprint: Any
    # The keys of a successful answer, each carrying the outputs (Backprop's client
    # and its API reference sometimes name the same value differently).
    response_keys: tuple[str, ...]
    # A batch item, as the view hands it to a model: what a build runs a model on.
    sample: Callable[[], Any]
    # None if a model's output for `item` has the task's shape, else what is wrong.
    check_answer: Callable[[Any, Any], str | None] = any_answer
    # A batch item -> the task_input uploaded code (model.bin, inference.py) receives.
    to_user_input: Callable[[Any], Any] = same_item
    # The built-in loader (a catalogue loader name) that serves a Hugging Face
    # folder declaring this task; None: no folder can.
    hf_loader: str | None = None
    # Training (a later issue): the trainer of this task's models.
    trainer: Any = None

    def answer(self, outputs: list, is_batch: bool) -> dict:
        """The response body: the outputs (or the one output) under every response key."""
        value = outputs if is_batch else outputs[0]
        return {key: value for key in self.response_keys}


class TaskSpecError(Exception):
    """The task table contradicts itself or the catalogue (raised at import)."""


TASK_SPECS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in TASK_SPECS and TASK_SPECS[spec.name] is not spec:
        raise TaskSpecError(f"two task specs are named {spec.name!r}")
    TASK_SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Forget a task (for tests that add a throwaway one)."""
    TASK_SPECS.pop(name, None)


def task_spec(name: str) -> TaskSpec:
    try:
        return TASK_SPECS[name]
    except KeyError:
        raise TaskSpecError(f"no task {name!r}; tasks: {', '.join(sorted(TASK_SPECS))}") from None


def check_specs(specs: dict[str, TaskSpec], task_models: dict[str, dict], loader_tasks: dict[str, frozenset]) -> None:
    """Every task of the catalogue has a spec, and every spec's Hugging Face
    loader exists and serves the task."""
    missing = sorted(set(task_models) - set(specs))
    if missing:
        raise TaskSpecError(f"the catalogue (TASK_MODELS) names tasks without a spec: {', '.join(missing)}; "
                            "add a module under tasks/ that registers a TaskSpec for each")
    for spec in specs.values():
        if spec.hf_loader is None:
            continue
        if spec.hf_loader not in loader_tasks:
            raise TaskSpecError(f"task {spec.name}: hf_loader {spec.hf_loader!r} is not a loader; "
                                f"loaders: {', '.join(sorted(loader_tasks))}")
        if spec.name not in loader_tasks[spec.hf_loader]:
            raise TaskSpecError(f"task {spec.name}: loader {spec.hf_loader} does not serve it "
                                f"(it serves {', '.join(sorted(loader_tasks[spec.hf_loader]))})")
