"""Inspect an uploaded Hugging Face folder without loading it, in a process of its own.

Run by uploads/hf_checks.py in the model version's sandbox (memory cap, CPU and
wall-clock limits), before the service allocates anything for the upload: a
hostile config.json makes even a weightless (meta device) model cost Python
objects and CPU time, and a hostile JSON file or safetensors header costs memory
to parse; all of that stays in this process. A standalone script, like
hf_meta_check.py beside it: it imports nothing of the service; torch,
transformers and sentence-transformers come from the service's site-packages,
named in the request (the sandbox binds them read-only).
`python -I -S hf_inspect.py MODEL_DIR REQUEST_JSON` answers one JSON line:
  {"ok": true, "modules": [{"path", "class", "missing": [parameters without weights],
   "problem": null or how else the weights do not fit, sizes}], "nbytes": N, "float_nbytes": N,
   "float_elements": N, "patterns": [...]}
  {"ok": false, "problem": "why no model could be built, worded for the upload's owner"}
  {"ok": false, "out_of_memory": true}

It checks the model (hf_meta_check.py: a plain transformers folder, or each
module of a sentence-transformers folder) and lists every regex pattern in the
folder's JSON files, for the service to judge (uploads/tokenizer_check.py).
"""

import json
import os
import resource
import sys

try:  # imported by the service's tests
    from . import hf_meta_check
except ImportError:  # run as a script, with -I: its own folder is not on the path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import hf_meta_check

Refused = hf_meta_check.Refused
headers = hf_meta_check.headers

# Modules of a sentence-transformers folder the check understands: the ones with
# weights are checked, the others carry none. Anything else is refused.
ST_WEIGHTED = ("Transformer", "Dense")
ST_WEIGHTLESS = ("Pooling", "Normalize", "Dropout")


# --- sentence-transformers folders ------------------------------------------------------

def inside(model_dir: str, relative: str) -> str:
    path = os.path.realpath(os.path.join(model_dir, relative))
    if path != os.path.realpath(model_dir) and not path.startswith(os.path.realpath(model_dir) + os.sep):
        raise Refused(f"modules.json names the path {relative!r}, outside the model's folder")
    return path


def read_json(path: str, label: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError, RecursionError) as exc:
        raise Refused(f"{label} cannot be read: {exc}") from None


def check_sentence_transformer(model_dir: str) -> list[dict]:
    modules = read_json(os.path.join(model_dir, "modules.json"), "modules.json")
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise Refused("modules.json must hold a list of modules")
    checked = []
    for module in modules:
        kind, relative = module.get("type"), module.get("path", "")
        name = kind.rsplit(".", 1)[-1] if isinstance(kind, str) else ""
        if not isinstance(kind, str) or not kind.startswith("sentence_transformers.") \
                or name not in ST_WEIGHTED + ST_WEIGHTLESS or not isinstance(relative, str):
            raise Refused(f"modules.json names the module {kind!r}; the service serves sentence-transformers "
                          f"folders made of {', '.join(ST_WEIGHTED + ST_WEIGHTLESS)} modules")
        folder = inside(model_dir, relative)
        label = relative or "."
        if name == "Transformer":
            checked.append(check_st_transformer(model_dir, folder, label))
        elif name == "Dense":
            checked.append(check_dense(model_dir, folder, label))
    return checked


def check_st_transformer(model_dir: str, folder: str, label: str) -> dict:
    settings = {}
    path = os.path.join(folder, "sentence_bert_config.json")
    if os.path.isfile(path):
        settings = read_json(path, os.path.join(label, "sentence_bert_config.json"))
    task = settings.get("transformer_task", "feature-extraction") if isinstance(settings, dict) else None
    if task != "feature-extraction":
        raise Refused(f"{label}: the Transformer module's transformer_task is {task!r}; the service serves "
                      "feature-extraction (text vectors)")
    loading = [key for key in ("model_args", "model_kwargs", "config_args", "config_kwargs") if settings.get(key)]
    if loading:
        raise Refused(f"{label}: sentence_bert_config.json sets {', '.join(loading)}; the service loads uploaded "
                      "models with their defaults: remove them")
    return hf_meta_check.check_transformers_folder(model_dir, folder, "AutoModel", label, encoder_only=True)


def check_dense(model_dir: str, folder: str, label: str) -> dict:
    import torch

    settings = read_json(os.path.join(folder, "config.json"), os.path.join(label, "config.json"))
    sizes_ok = isinstance(settings, dict) and all(
        isinstance(settings.get(key), int) and settings[key] > 0 for key in ("in_features", "out_features"))
    if not sizes_ok:
        raise Refused(f"{label}: a Dense module's config.json needs positive in_features and out_features")
    with torch.device("meta"):
        layer = torch.nn.Linear(settings["in_features"], settings["out_features"], bias=settings.get("bias", True))
    path = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(path):
        raise Refused(f"{label}: a Dense module needs its weights as model.safetensors (a pickle such as "
                      "pytorch_model.bin is not read)")
    found = headers([path], model_dir)
    wanted = {f"linear.{name}": list(tensor.shape) for name, tensor in layer.named_parameters()}
    got = {key: shape for key, (_, shape) in found.items()}
    problem = next((f"the weights' {key} is {got.get(key, 'missing')}, but the Dense module built from "
                    f"{os.path.join(label, 'config.json')} needs {wanted.get(key, 'no such tensor')}"
                    for key in sorted(set(wanted) | set(got)) if got.get(key) != wanted.get(key)), None)
    return {"path": label, "class": "Dense", "missing": [], "problem": problem, **hf_meta_check.sizes(layer)}


# --- tokenizers' regex patterns ---------------------------------------------------------------

def regex_patterns(model_dir: str, limit: int) -> list[dict]:
    """Every {"Regex": ...} pattern in the folder's JSON files (tokenizers' normalizers,
    pre-tokenizers, decoders, post-processors at any depth), and the "pattern" of a
    Mistral tekken file; at most `limit`."""
    found: list[dict] = []
    for folder, dirs, files in os.walk(model_dir):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".json"):
                continue
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="utf-8") as handle:
                    data = json.load(handle)
            except (OSError, ValueError, RecursionError):
                continue  # not JSON: no tokenizer loads it either
            label = os.path.relpath(path, model_dir)
            stack = [("", data)]
            while stack and len(found) < limit:
                where, value = stack.pop()
                if isinstance(value, dict):
                    if isinstance(value.get("Regex"), str):
                        found.append({"file": label, "where": where or "(top)", "pattern": value["Regex"]})
                    stack.extend((f"{where}.{key}".lstrip("."), item) for key, item in value.items())
                elif isinstance(value, list):
                    stack.extend((f"{where}[{index}]", item) for index, item in enumerate(value))
            tekken = data.get("config") if "tekken" in name and isinstance(data, dict) else None
            if isinstance(tekken, dict) and isinstance(tekken.get("pattern"), str) and len(found) < limit:
                found.append({"file": label, "where": "config.pattern", "pattern": tekken["pattern"]})
    return found


# --- the process ---------------------------------------------------------------------------

def inspect(request: dict) -> dict:
    model_dir = request["model_dir"]
    if request.get("sentence_transformers"):
        modules = check_sentence_transformer(model_dir)
    else:
        modules = [hf_meta_check.check_transformers_folder(model_dir, model_dir, request["model_class"], ".")]
    totals = {key: sum(module[key] for module in modules) for key in ("nbytes", "float_nbytes", "float_elements")}
    return {"ok": True, "modules": modules, **totals,
            "patterns": regex_patterns(model_dir, int(request.get("max_patterns", 1000)))}


def out_of_memory(exc: BaseException) -> bool:
    """Whether an error is the address-space cap's (a shared library that cannot be mapped, a C++ bad_alloc)."""
    return isinstance(exc, MemoryError) or any(
        marker in str(exc) for marker in ("failed to map segment", "Cannot allocate memory", "bad_alloc"))


def answer_for(request: dict) -> dict:
    try:
        return inspect(request)
    except Refused as exc:
        return {"ok": False, "problem": str(exc)}
    except Exception as exc:  # what transformers says of a config it cannot build
        if out_of_memory(exc):
            return {"ok": False, "out_of_memory": True}
        return {"ok": False, "problem": f"{type(exc).__name__}: {str(exc)[:1000]}"}


def main() -> None:
    request = {**json.loads(sys.argv[2]), "model_dir": sys.argv[1]}
    # Its own limits too, for a service that runs it without a sandbox.
    memory = int(request["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(request["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    import site

    for folder in request.get("site_dirs", []):
        site.addsitedir(folder)
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # libraries' prints cannot corrupt the answer
    sys.stdout = sys.stderr
    try:
        import safetensors  # noqa: F401  (the libraries first: a failure here is the check's, not the upload's)
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except Exception as exc:
        answer = {"ok": False, "out_of_memory": True} if out_of_memory(exc) else {"setup_failed": repr(exc)[:1000]}
    else:
        answer = answer_for(request)
    protocol.write(json.dumps(answer) + "\n")
    protocol.flush()


if __name__ == "__main__":
    main()
