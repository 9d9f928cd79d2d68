"""The isolated worker that runs one user model: its pickle or its code, never the web process's.

Started by uploads/worker_client.py with the model's own virtual environment's
Python: `python user_worker.py MODEL_DIR FORMAT`. It is a standalone script (no
imports from the service). Protocol on stdin/stdout, one JSON object per line:
  -> {"task": "...", "input": ...}     <- {"output": ...} or {"error": "..."}
On start it answers {"ready": true} once the model is loaded, or {"error": ...}.
User code that prints goes to stderr, so it cannot corrupt the protocol.
"""

import importlib.util
import json
import os
import pickle
import sys
import traceback


def to_json(value):
    if hasattr(value, "tolist"):  # numpy arrays and torch tensors
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def load(model_dir: str, model_format: str):
    if model_format == "pickle":
        with open(os.path.join(model_dir, "model.bin"), "rb") as f:
            model = pickle.load(f)
        return lambda task_input, task: model(task_input, task)
    if model_format == "inference":
        spec = importlib.util.spec_from_file_location("inference", os.path.join(model_dir, "inference.py"))
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, model_dir)
        spec.loader.exec_module(module)
        model = module.load_model(model_dir)
        return lambda task_input, task: module.call_model(model, task_input, task)
    raise ValueError(f"unknown model format {model_format!r}")


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
        call = load(model_dir, model_format)
    except BaseException:
        send({"error": "loading the model failed:\n" + traceback.format_exc(limit=5)})
        return
    send({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            output = to_json(call(request["input"], request["task"]))
            send({"output": output})
        except Exception as exc:
            traceback.print_exc()
            send({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()
