"""inference.py with load_model(model_dir) and call_model(model, task_input, task):
the user's own code, run in the version's sandbox."""

import os

from .sandboxed import SandboxedCode


class InferenceCode(SandboxedCode):
    name = "inference"
    needs = "inference.py (load_model and call_model)"

    def detect(self, files_dir: str, model_config: dict) -> bool:
        return os.path.isfile(os.path.join(files_dir, "inference.py"))
