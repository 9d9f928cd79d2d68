"""Running an exported model with ONNX Runtime, and choosing the backend of a model.

Only the loaders that serve on ONNX import this module's onnxruntime parts (inside
functions): a torch-only service never loads onnxruntime.
"""

import logging
import os

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")


def parse_overrides(raw: str) -> tuple[tuple[str, str], ...]:
    """INFER_BACKEND_OVERRIDES ("key:backend,key:backend") as pairs; a bad entry raises."""
    pairs = []
    for entry in filter(None, (part.strip() for part in raw.split(","))):
        key, _, backend = entry.rpartition(":")
        if not key or backend not in BACKENDS:
            raise ValueError(f"INFER_BACKEND_OVERRIDES: {entry!r} is not 'model key:backend' "
                             f"with a backend among {', '.join(BACKENDS)}")
        pairs.append((key.strip(), backend))
    return tuple(pairs)


def chosen_backend(key: str, default: str, overrides: tuple[tuple[str, str], ...], device: str,
                   auto: str = "torch") -> str:
    """The backend a model is served on: its override, else the default; torch
    off the CPU (the ONNX backend runs on ONNX Runtime's CPU provider only).

    "auto" is the loader's own choice (`auto`): ONNX where it has been measured
    faster with verified answers (the catalogue's text vectorisers), else torch.
    """
    backend = dict(overrides).get(key, default)
    if backend == "auto":
        return auto if device == "cpu" else "torch"
    if backend == "onnx" and device != "cpu":
        log.warning("model %s: the ONNX backend runs on CPU only; serving it with torch on %s", key, device)
        return "torch"
    return backend


def session(path: str, threads: int):
    """An ONNX Runtime session on the CPU with `threads` intra-op threads (TORCH_THREADS:
    threads x worker processes must not exceed the cores) and sequential execution
    (an encoder's graph is one chain; parallel branches would only add threads)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(0, threads)  # 0: ONNX Runtime's default, all cores (as torch's)
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class OnnxForward:
    """A session called like a model: {input name: int array} -> {output name: float32 array}.

    Inputs the graph does not take are dropped (a tokenizer may return more than the
    model reads); ONNX Runtime's run releases the GIL, so request threads tokenise meanwhile.
    """

    def __init__(self, path: str, threads: int):
        self.session = session(path, threads)
        self.input_names = [entry.name for entry in self.session.get_inputs()]
        self.output_names = [entry.name for entry in self.session.get_outputs()]

    def __call__(self, inputs: dict) -> dict[str, np.ndarray]:
        feed = {name: np.asarray(inputs[name], dtype=np.int64) for name in self.input_names}
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))


def onnx_file_bytes(folder_file: str) -> int:
    """Memory a session's weights take, counted as its files (graph and external data)."""
    folder = os.path.dirname(folder_file)
    base = os.path.basename(folder_file)
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder) if name.startswith(base))
