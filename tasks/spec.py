"""What a task is, declared once, as data: its TaskSpec, beside the task's module.

Like transformers' SUPPORTED_TASKS, one entry holds everything the service needs
to know about a task, wherever it is needed: its route (path, description, the
request and response schemas), how a request body becomes the batch items a
model runs and how their outputs become the answer, its default models (the
catalogue's rows), the sample a build runs a model on and the check of the
model's answer, the adapter from a batch item to what uploaded code receives,
the built-in loader that serves a Hugging Face folder declaring the task, and
its trainer class.

Nothing here is Flask's: the web layer (api/task_routes.py) generates each
task's route and its OpenAPI entry from the spec, the playground its form, the
prediction URLs their inputs.

A task module ends with ``SPEC = register(TaskSpec(...))``; the package imports
every task module (tasks/__init__.py), so a new task is one module plus its
catalogue rows. ``check_specs`` runs at import and fails with a message naming
what is missing, instead of a KeyError in a user's build.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from model_registry.catalogue import TASK_MODELS


def same_item(item):
    """The default adapter: uploaded code receives the batch item as it is."""
    return item


def any_answer(item, output) -> str | None:
    """The default answer check: anything JSON can carry."""
    return None


def prepared_items(body: dict) -> tuple[list, bool]:
    """The default split: the request schema already made the items (its post_load)."""
    return body["items"], body["is_batch"]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    # The route: POST <path>, under an OpenAPI tag named after the task with this
    # description; `summary` is the operation's one line.
    path: str
    description: str
    summary: str
    # marshmallow classes (the task module's); the request's loads into the body the hooks below get.
    request_schema: type
    response_schema: type
    # The keys of a successful answer, each carrying the outputs (Backprop's client
    # and its API reference sometimes name the same value differently).
    response_keys: tuple[str, ...]
    # A batch item, as the route hands it to a model: what a build runs a model on.
    sample: Callable[[], Any]
    # The loaded body -> (the batch items a model runs, whether the request was a batch).
    # Called once the model is found, so that a request for an unknown model fails
    # before any costly step here (decoding images).
    items: Callable[[dict], tuple[list, bool]] = prepared_items
    # (the model found, the body) -> raise core.errors.InvalidInput when this model
    # cannot answer this body (labels a zero-shot model needs, a tabular model's columns).
    check_model: Callable[[Any, dict], None] | None = None
    # (outputs, body) -> the outputs answered (top_k's cut, similarity of vector pairs).
    finish: Callable[[list, dict], list] | None = None
    # (outputs, is_batch) -> the response body, for a task whose answer is not its
    # outputs under every response key.
    answer_body: Callable[[list, bool], dict] | None = None
    # The items carry a "control" the model polls between tokens: the route stops a
    # run nobody waits for any more (its client left, or its deadline passed).
    stops_when_abandoned: bool = False
    # None if a model's output for `item` has the task's shape, else what is wrong.
    check_answer: Callable[[Any, Any], str | None] = any_answer
    # A batch item -> the task_input uploaded code (model.bin, inference.py) receives.
    to_user_input: Callable[[Any], Any] = same_item
    # The built-in loader (a catalogue loader name) that serves a Hugging Face
    # folder declaring this task; None: no folder can.
    hf_loader: str | None = None
    # The TaskTrainer subclass that trains this task's models (trainers/); None: not trainable.
    trainer: type | None = None

    @property
    def models(self) -> dict[str, str]:
        """The task's global models, {public name: catalogue key}, its default first
        (the catalogue's rows); empty for a task only uploaded models serve."""
        return TASK_MODELS.get(self.name, {})

    def answer(self, outputs: list, is_batch: bool) -> dict:
        """The response body: the outputs (or the one output) under every response key."""
        if self.answer_body is not None:
            return self.answer_body(outputs, is_batch)
        value = outputs if is_batch else outputs[0]
        return {key: value for key in self.response_keys}

    def request_fields(self) -> dict:
        """The request schema's fields by name (what the playground's form and the
        prediction URLs' query strings are made of)."""
        return self.request_schema().fields


class TaskSpecError(Exception):
    """The task table contradicts itself or the catalogue (raised at import)."""


class NoTrainer(LookupError):
    """A task that cannot be trained (the message names those that can)."""


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


def trainable_tasks() -> list[str]:
    return sorted(name for name, spec in TASK_SPECS.items() if spec.trainer)


def trainer_for(task: str):
    """A trainer of `task`'s models (its spec's trainer class); NoTrainer naming the tasks that have one.
    A trainer's module imports its library only inside train(): making one is cheap."""
    spec = TASK_SPECS.get(task)
    if spec is None or not spec.trainer:
        raise NoTrainer(f"{task!r} cannot be trained; tasks that can: {', '.join(trainable_tasks())}.")
    return spec.trainer()


def check_specs(specs: dict[str, TaskSpec], task_models: dict[str, dict], loader_tasks: dict[str, frozenset]) -> None:
    """Every task of the catalogue has a spec, every spec's Hugging Face loader
    exists and serves the task, and every trainer trains the task that names it."""
    missing = sorted(set(task_models) - set(specs))
    if missing:
        raise TaskSpecError(f"the catalogue (TASK_MODELS) names tasks without a spec: {', '.join(missing)}; "
                            "add a module under tasks/ that registers a TaskSpec for each")
    for spec in specs.values():
        if spec.trainer is not None and spec.trainer.task != spec.name:
            raise TaskSpecError(f"task {spec.name}: its trainer {spec.trainer.__name__} trains {spec.trainer.task}")
        if spec.hf_loader is None:
            continue
        if spec.hf_loader not in loader_tasks:
            raise TaskSpecError(f"task {spec.name}: hf_loader {spec.hf_loader!r} is not a loader; "
                                f"loaders: {', '.join(sorted(loader_tasks))}")
        if spec.name not in loader_tasks[spec.hf_loader]:
            raise TaskSpecError(f"task {spec.name}: loader {spec.hf_loader} does not serve it "
                                f"(it serves {', '.join(sorted(loader_tasks[spec.hf_loader]))})")
