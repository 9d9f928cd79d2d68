"""A loaded model: what the cache holds and what task code calls."""

from collections.abc import Callable


class ServedModel:
    """One loaded model and the task functions it serves.

    ``runners`` maps a task name to a function taking a list of task inputs and
    returning one output per input, in order: batch-shaped so that requests
    can be coalesced into one forward pass.
    """

    def __init__(self, key: str, model, nbytes: int, device: str, runners: dict[str, Callable]):
        self.key = key
        self.model = model
        self.nbytes = nbytes
        self.device = device
        self.runners = runners

    @property
    def tasks(self) -> list[str]:
        return list(self.runners)

    def run(self, task: str, inputs: list) -> list:
        return self.runners[task](inputs)
