"""The tasks the service serves: every module of this package that registers a
TaskSpec (tasks/spec.py) is one, found here without a list to keep in step.

Importing the package imports every task module and checks the table against
the catalogue and the loaders, so a task the catalogue names without a spec, or
a spec naming a loader that cannot serve it, fails at import with a message.
"""

import importlib
import pkgutil

from model_registry.catalogue import TASK_MODELS
from model_registry.loaders import LOADERS

from .spec import TASK_SPECS, check_specs

# Modules of this package that are not tasks: what the tasks share.
SHARED = {"answers", "common", "images", "spec"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in SHARED:
        importlib.import_module(f"{__name__}.{_module.name}")

check_specs(TASK_SPECS, TASK_MODELS, {name: loader.tasks for name, loader in LOADERS.items()})


def in_catalogue_order() -> list:
    """The specs in the catalogue's order of tasks (Backprop's reference order, which
    the API docs follow), then the tasks only uploaded models serve, by name."""
    position = {task: index for index, task in enumerate(TASK_MODELS)}
    return sorted(TASK_SPECS.values(), key=lambda spec: (position.get(spec.name, len(position)), spec.name))


# name -> spec (a live view: a spec registered later, by a test, is in it too).
TASKS = TASK_SPECS
