"""An uploaded model folder's config against its weights, on the meta device.

Part of the check process (uploads/hf_inspect.py; standalone like it: it imports
nothing of the service). The weights are read only through their safetensors
headers, via the same file resolution and header validation transformers uses.
The model is built on the meta device (no tensor memory) with the class the
loader would use and fed the headers as meta tensors through transformers' own
from_pretrained, so its renaming, base-model prefix, tied weights and ignore
rules apply exactly as at the real load. What it reports: the parameters without
weights, the first other misfit (a shape, an unexpected tensor, integers where
the model needs floats), and the model's size.
"""

import os

# Config keys that count a model's layers. Every layer holds at least one tensor of
# its own, so a count above the checkpoint's tensor count cannot match its weights;
# refusing it first spares building a million-layer meta model.
LAYER_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers", "decoder_layers",
              "num_encoder_layers", "num_decoder_layers")
SHOWN = 6  # names listed before "and N more"


class Refused(Exception):
    """The folder cannot be served as it is; the message says why and what to fix."""


def _names(names) -> str:
    names = sorted(names)
    shown = ", ".join(names[:SHOWN])
    return shown if len(names) <= SHOWN else f"{shown} and {len(names) - SHOWN} more"


# --- weights: files and headers ---------------------------------------------------

def weight_files(folder: str, config) -> list[str]:
    """The checkpoint files transformers' own resolution picks for this folder; only
    safetensors: a pickle (pytorch_model.bin) runs code when read and shows nothing
    of its tensors before it is read."""
    from transformers.modeling_utils import _get_resolved_checkpoint_files

    try:
        files, _ = _get_resolved_checkpoint_files(
            folder, variant=None, gguf_file=None, use_safetensors=None, user_agent=None, is_remote_code=False,
            transformers_explicit_filename=getattr(config, "transformers_weights", None))
    except (OSError, ValueError) as exc:
        raise Refused(f"no weights found: {exc}") from None
    files = [*(files or []), *(os.path.join(folder, name) for name in type(config).extra_files
                               if os.path.isfile(os.path.join(folder, name)))]
    pickled = [os.path.basename(f) for f in files if not f.endswith(".safetensors")]
    if pickled:
        raise Refused(f"{pickled[0]} is not a safetensors file. The service reads uploaded weights only as "
                      "safetensors (a pickle such as pytorch_model.bin can run code when read, and its tensors "
                      "cannot be checked before loading): save them with save_pretrained(), which writes "
                      "model.safetensors, or convert them.")
    return files


def headers(files: list[str], model_dir: str) -> dict[str, tuple[str, list[int]]]:
    """{tensor name: (safetensors dtype, shape)} of the files, as safetensors
    validates them when it opens a file (offsets within the file, sizes that match
    the shapes); no tensor data is read."""
    from safetensors import safe_open

    found: dict[str, tuple[str, list[int]]] = {}
    for path in files:
        name = os.path.relpath(path, model_dir)
        try:
            with safe_open(path, framework="pt") as weights:
                for key in weights.keys():
                    tensor = weights.get_slice(key)
                    found[key] = (tensor.get_dtype(), list(tensor.get_shape()))
        except Exception as exc:  # safetensors raises its own error types for a bad header
            raise Refused(f"{name} is not a valid safetensors file: {exc}") from None
    return found


def meta_tensors(found: dict) -> dict:
    import torch

    dtypes = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "U16": "uint16",
              "U32": "uint32", "U64": "uint64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}
    state = {}
    for key, (dtype, shape) in found.items():
        torch_dtype = getattr(torch, dtypes.get(dtype, "-"), None)
        if torch_dtype is None:
            raise Refused(f"the weights store {key} as {dtype}, which torch here cannot hold")
        state[key] = torch.empty(shape, dtype=torch_dtype, device="meta")
    return state


def check_layer_counts(config: dict, tensor_count: int, where: str = "config.json") -> None:
    stack = [config]
    while stack:
        section = stack.pop()
        for key, value in section.items():
            if isinstance(value, dict):
                stack.append(value)
            elif key in LAYER_KEYS and isinstance(value, int) and not isinstance(value, bool) \
                    and value > tensor_count:
                raise Refused(f"{where} declares {key} = {value}, but the weights hold {tensor_count} tensors "
                              "in all: every layer needs weights of its own")


# --- the model on the meta device -----------------------------------------------------

def model_class(class_name: str, folder: str):
    """(the concrete class, its config) as from_pretrained would pick them."""
    import transformers
    from transformers.models.auto.auto_factory import _get_model_class

    cls = getattr(transformers, class_name)
    if hasattr(cls, "_model_mapping"):  # an Auto class: the mapping picks the class by config
        config = transformers.AutoConfig.from_pretrained(folder)
        return _get_model_class(config, cls._model_mapping), config
    return cls, cls.config_class.from_pretrained(folder)


def _floating(dtype: str) -> bool:
    return dtype.startswith(("F", "BF"))


def missing_parameters(model, info: dict) -> list[str]:
    """The model's parameters the checkpoint has no tensor for (buffers are recomputed)."""
    parameters = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return sorted(key for key in info["missing_keys"] if key in parameters)


def compare(model, info: dict, found: dict, config_name: str) -> str | None:
    """The first other way the checkpoint does not fit the model built from its config, or None."""
    built = f"{type(model).__name__} built from {config_name}"
    for name, got, wanted in sorted(info["mismatched_keys"], key=lambda entry: entry[0]):
        return f"the weights' {name} has shape {list(got)}, but {built} needs {list(wanted)}"
    if info["unexpected_keys"]:
        return f"the weights hold {_names(info['unexpected_keys'])}, which {built} does not have"
    if info.get("conversion_errors"):
        return f"the weights could not be mapped onto {built}: {info['conversion_errors']}"
    state = model.state_dict()
    prefix = getattr(model, "base_model_prefix", "") or ""
    for key, (dtype, _) in sorted(found.items()):
        candidates = [key, f"{prefix}.{key}", key.removeprefix(prefix + ".")] if prefix else [key]
        target = next((state[name] for name in candidates if name in state), None)
        if target is not None and _floating(dtype) != target.is_floating_point():
            wanted = "floating-point numbers" if target.is_floating_point() else str(target.dtype)
            return f"the weights store {key} as {dtype}, but {built} needs {wanted} there"
    return None


def sizes(model) -> dict:
    """What the loaded model will take: its parameters and buffers (tied ones once),
    and how much of that is floating point (halved when served in half precision)."""
    nbytes = float_nbytes = float_elements = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        size = tensor.numel() * tensor.element_size()
        nbytes += size
        if tensor.is_floating_point():
            float_nbytes += size
            float_elements += tensor.numel()
    return {"nbytes": nbytes, "float_nbytes": float_nbytes, "float_elements": float_elements}


def check_transformers_folder(model_dir: str, folder: str, class_name: str, label: str,
                              encoder_only: bool = False) -> dict:
    import transformers

    cls, config = model_class(class_name, folder)
    # sentence-transformers reads only the encoder of an encoder-decoder model (T5...)
    encoder = encoder_class(config) if encoder_only and getattr(config, "is_encoder_decoder", False) else None
    cls = encoder or cls
    config_name = os.path.normpath(os.path.join(label, "config.json"))
    found = headers(weight_files(folder, config), model_dir)
    check_layer_counts(config.to_dict(), len(found), config_name)
    transformers.logging.set_verbosity_error()
    ignore = {"_keys_to_ignore_on_load_unexpected": ["decoder.*"]} if encoder else {}
    saved = {name: getattr(cls, name) for name in ignore}
    try:
        for name, value in ignore.items():
            setattr(cls, name, value)
        model, info = cls.from_pretrained(None, config=config, state_dict=meta_tensors(found),
                                          device_map={"": "meta"}, output_loading_info=True,
                                          ignore_mismatched_sizes=True)
    finally:
        for name, value in saved.items():
            setattr(cls, name, value)
    return {"path": label, "class": type(model).__name__, "missing": missing_parameters(model, info),
            "problem": compare(model, info, found, config_name), **sizes(model)}


def encoder_class(config):
    """The encoder-only class sentence-transformers loads for an encoder-decoder config, if any."""
    try:
        from sentence_transformers.base.modules.transformer import _ENCODER_ONLY_MODELS
    except ImportError:
        return None
    import importlib

    for config_class, module_path, class_name in _ENCODER_ONLY_MODELS:
        if isinstance(config, config_class):
            return getattr(importlib.import_module(module_path), class_name)
    return None
