"""The trainers, found through the task specs: a task that can be trained names
its trainer class in its TaskSpec (``trainer="module:Class"``), so what a task
is stays in one place. The name is imported only when asked for; a trainer's
module imports its library only inside train().
"""

import importlib
from functools import cache

from tasks.spec import TASK_SPECS  # importing tasks registers every task's spec

from .base import TaskTrainer


class NoTrainer(LookupError):
    pass


def trainable_tasks() -> list[str]:
    return sorted(name for name, spec in TASK_SPECS.items() if spec.trainer)


@cache
def trainer_for(task: str) -> TaskTrainer:
    """The trainer of `task`'s models; NoTrainer naming the tasks that have one."""
    spec = TASK_SPECS.get(task)
    if spec is None or not spec.trainer:
        raise NoTrainer(f"{task!r} cannot be trained; tasks that can: {', '.join(trainable_tasks())}.")
    module_name, _, class_name = spec.trainer.partition(":")
    trainer = getattr(importlib.import_module(module_name), class_name)()
    if trainer.task != task:
        raise NoTrainer(f"the trainer {spec.trainer} trains {trainer.task}, not {task}")
    return trainer
