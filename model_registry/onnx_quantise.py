"""int8 dynamic quantisation of an exported encoder, and the measure its gate uses.

ONNX Runtime's dynamic quantisation stores the chosen MatMuls' weights as int8
(per output channel: one scale per column keeps small columns from being crushed
by large ones) and quantises their inputs on the fly. What is quantised is a
preset, matched on the module path the dynamo exporter records on each node:

- "all": every MatMul with a weight matrix: on all-MiniLM-L6-v2, 2x the fp32
  export's speed on batches (3x on one sentence), but a worst calibration cosine
  of 0.945, the feed-forward layers losing most;
- "attention": the attention projections (query, key, value, output): 0.989, 1.2x;
- "attention-inner": those of all but the first and last layers: 0.9935, 1.1x.

The service measures each quantised model against its fp32 export on the
calibration sentences and refuses one below INFER_ONNX_INT8_MIN_COSINE.
"""

import ast
import re

import numpy as np

PRESETS = ("all", "attention", "attention-inner")
SCOPES = "pkg.torch.onnx.name_scopes"


def _module_path(node) -> str:
    """The torch module a node came from ("m.0.model.encoder.layer.3.attention.self.query")."""
    for prop in node.metadata_props:
        if prop.key == SCOPES:
            scopes = ast.literal_eval(prop.value)
            return scopes[-2] if len(scopes) > 1 else ""
    return ""


def _layer(path: str) -> int | None:
    found = re.findall(r"\.layers?\.(\d+)\.", path + ".")
    return int(found[-1]) if found else None


def _is_attention(path: str) -> bool:
    # BERT-like "attention.self.query", "attention.output.dense"; DistilBERT "attention.q_lin";
    # BART-like "self_attn.q_proj". Feed-forward layers are named otherwise.
    return "attention" in path or "attn" in path


def nodes_to_quantise(model, preset: str) -> list[str]:
    """Names of the MatMul nodes with a weight matrix that `preset` quantises."""
    if preset not in PRESETS:
        raise ValueError(f"unknown int8 preset {preset!r}; presets: {', '.join(PRESETS)}")
    weights = {initializer.name for initializer in model.graph.initializer}
    candidates = [(node.name, _module_path(node)) for node in model.graph.node
                  if node.op_type == "MatMul" and node.input[1] in weights]
    if preset == "all":
        return [name for name, _path in candidates]
    chosen = [(name, path) for name, path in candidates if _is_attention(path)]
    if preset == "attention-inner":
        layers = sorted({_layer(path) for _name, path in chosen} - {None})
        edges = {layers[0], layers[-1]} if layers else set()
        chosen = [(name, path) for name, path in chosen if _layer(path) not in edges]
    return [name for name, _path in chosen]


def quantise(fp32_path: str, int8_path: str, preset: str) -> int:
    """Write the int8 model of `preset`; return how many MatMuls were quantised."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(fp32_path)
    chosen = nodes_to_quantise(model, preset)
    if not chosen:
        raise ValueError(f"int8 preset {preset!r} matches no weight matrix of this model")
    quantize_dynamic(
        fp32_path, int8_path,
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=chosen,
        per_channel=True,
        weight_type=QuantType.QInt8,  # QUInt8 weights measured slower and no more exact here
        use_external_data_format=True,
    )
    return len(chosen)


def worst_cosine(vectors: np.ndarray, reference: np.ndarray) -> float:
    """The lowest cosine similarity between rows of `vectors` and of `reference`."""
    a = vectors.astype(np.float64)
    b = reference.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.min(np.sum(a * b, axis=1) / np.maximum(norms, 1e-30)))
