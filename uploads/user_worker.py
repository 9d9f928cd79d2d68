"""The isolated worker that runs one user model: its pickle or its code, never the web process's.

Started by uploads/worker_client.py with the model's own virtual environment's
Python: `python user_worker.py MODEL_DIR FORMAT`. It is a standalone script (no
imports from the service). Protocol on stdin/stdout, one JSON object per line:
  -> {"task": "...", "input": ...}     <- {"output": ...} or {"error": "..."}
On start it answers {"ready": true} once the model is loaded, or {"error": ...}.
An error from the model's code also carries "failure": worker_failure_report.py's
report (the step, the exception, the frame in the author's files), and "error"
is that report's one sentence.
User code that prints goes to stderr, so it cannot corrupt the protocol.
"""

import importlib.util
import json
import os
import pickle
import sys

# Beside this script (the sandbox's /opt/infer), imported before the model's folder joins sys.path.
from worker_failure_report import ModelCodeError, report


def to_json(value):
    if hasattr(value, "tolist"):  # numpy arrays and torch tensors
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


class StepFailed(Exception):
    """The model's code failed during a step (worker_failure_report.STEPS); the cause is its exception."""

    def __init__(self, step: str, entry: str = ""):
        super().__init__(step)
        self.step = step
        self.entry = entry


def _step(step: str, entry: str, run):
    try:
        return run()
    except BaseException as exc:
        raise StepFailed(step, entry) from exc


def _entry_point(module, name: str, signature: str):
    function = getattr(module, name, None)
    if not callable(function):
        raise ModelCodeError(f"inference.py must define {name}({signature}); it defines no such function.")
    return function


def load(model_dir: str, model_format: str):
    """(the model's call, the step its failures are reported as)."""
    if model_format == "pickle":
        def unpickle():
            with open(os.path.join(model_dir, "model.bin"), "rb") as f:
                return pickle.load(f)
        model = _step("unpickle", "model.bin", unpickle)
        return (lambda task_input, task: model(task_input, task)), "pickle-call"
    if model_format == "inference":
        spec = importlib.util.spec_from_file_location("inference", os.path.join(model_dir, "inference.py"))
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, model_dir)
        _step("import", "inference.py", lambda: spec.loader.exec_module(module))
        load_model = _step("load", "", lambda: _entry_point(module, "load_model", "model_dir"))
        call_model = _step("load", "", lambda: _entry_point(module, "call_model", "model, task_input, task"))
        model = _step("load", "", lambda: load_model(model_dir))
        return (lambda task_input, task: call_model(model, task_input, task)), "call"
    raise ValueError(f"unknown model format {model_format!r}")


def failed(exc: BaseException, model_dir: str, step: str, entry: str = "", task: str = "") -> dict:
    try:
        failure = report(exc, model_dir, step, entry=entry, task=task)
    except Exception:  # an exception whose message itself raises: its type is what can be said
        return {"error": f"{step}: {type(exc).__name__} (its message could not be read)"}
    return {"error": failure["sentence"], "failure": failure}


def main() -> None:
    model_dir, model_format = sys.argv[1], sys.argv[2]
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    # Anything else written to stdout, even by C code, goes to stderr instead.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    os.chdir(model_dir)

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    try:
        call, call_step = load(model_dir, model_format)
    except StepFailed as step_failed:
        send(failed(step_failed.__cause__, model_dir, step_failed.step, entry=step_failed.entry))
        return
    send({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            output = to_json(call(request["input"], request["task"]))
            send({"output": output})
        except Exception as exc:
            send(failed(exc, model_dir, call_step, task=request["task"]))


if __name__ == "__main__":
    main()
