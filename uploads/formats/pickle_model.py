"""model.bin: a pickled callable model(task_input, task), Backprop's own format.
Unpickling runs code, so it is loaded only in the version's sandbox."""

import os

from .sandboxed import SandboxedCode


class PickleModel(SandboxedCode):
    name = "pickle"
    needs = "model.bin (a pickled callable)"

    def detect(self, files_dir: str, model_config: dict) -> bool:
        return os.path.isfile(os.path.join(files_dir, "model.bin"))
