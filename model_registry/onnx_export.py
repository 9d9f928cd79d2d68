"""Export a torch model to ONNX once per model, revision and library versions, and cache it.

The exporter is torch.onnx's dynamo exporter (torch.export + onnxscript). With
torch 2.13 and transformers 5 the older TorchScript exporter still runs but
traces the attention mask code into constants: its BERT graphs answer wrongly
for any other input shape (max error 1.2 on MiniLM's hidden states), so it is
not used. No optimum: it pins an older transformers.

An export is a folder named after a hash of its key: the model's files (their
content, so a new revision or a re-upload is a new key), the versions of
every library that shapes the graph or runs it, and EXPORT_FORMAT. A changed key
builds a new folder and removes the old ones. Concurrent first loads (threads,
gunicorn workers, replicas on a shared volume) export once: the build holds a
file lock and writes into a temporary folder renamed into place when complete,
so a reader sees a whole export or none.

Where: beside the model's files when they are the operator's (under MODEL_DIR,
writable); else under the data dir. A packaged model (site-packages) or the
Hugging Face cache is not ours to write into, and a user model's own folder
holds files the user uploaded: an "export" in their zip must never be loaded
as if this service had made it.
"""

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib import metadata

log = logging.getLogger(__name__)

# Bump when the export code changes what it writes: every cached export (and every
# recorded export failure) is then built again.
EXPORT_FORMAT = 1
MANIFEST = "manifest.json"
# The cache folder inside an operator's model folder (skipped when hashing the model's files).
IN_MODEL_DIR = ".onnx"
LIBRARIES = ("torch", "transformers", "sentence-transformers", "onnx", "onnxscript", "onnxruntime")


def library_versions() -> dict[str, str]:
    versions = {"export_format": str(EXPORT_FORMAT)}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def files_digest(path: str) -> str:
    """sha256 over the model folder's files (names and content; dot-files and the
    export cache skipped). About 0.1 s for MiniLM's 90 MB."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as file:
                digest.update(hashlib.file_digest(file, "sha256").digest())
    return digest.hexdigest()


def cache_root(model_path: str, cache_dir: str, model_dir: str, data_dir: str) -> str:
    """The folder that keeps a model's exports (see the module notes)."""
    if cache_dir:
        return cache_dir
    model_path, model_dir = os.path.realpath(model_path), os.path.realpath(model_dir) if model_dir else ""
    if model_dir and model_path.startswith(model_dir + os.sep) and os.access(model_path, os.W_OK):
        return os.path.join(model_path, IN_MODEL_DIR)
    return os.path.join(data_dir or tempfile.gettempdir(), "onnx")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def cached_build(root: str, name: str, key: dict, build: Callable[[str], dict]) -> tuple[str, dict]:
    """The folder of `name` built for `key`, and its manifest: from the cache, or
    made by `build(folder)` (which writes its files there and returns the manifest).

    Built under a lock on `root/name.lock`; other builds of `name` are removed.
    """
    name = _safe(name)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    final = os.path.join(root, f"{name}-{digest}")
    manifest = _read_manifest(final)
    if manifest is not None:
        return final, manifest
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, f"{name}.lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # per open file: also excludes other threads of this process
        manifest = _read_manifest(final)
        if manifest is not None:  # another thread or process built it while this one waited
            return final, manifest
        _remove_other_builds(root, name, keep="")  # what is left of builds that died half-way
        building = tempfile.mkdtemp(dir=root, prefix=f".{name}-")
        log.info("building %s in %s (once per model files and library versions)", name, root)
        started = time.monotonic()
        try:
            manifest = {**build(building), "key": key}
            with open(os.path.join(building, MANIFEST), "w") as out:
                json.dump(manifest, out, indent=2, sort_keys=True)
            os.rename(building, final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        _remove_other_builds(root, name, keep=final)
    log.info("built %s in %.1f s", name, time.monotonic() - started)
    return final, manifest


def _read_manifest(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, MANIFEST)) as file:
            return json.load(file)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _remove_other_builds(root: str, name: str, keep: str) -> None:
    """Remove `name`'s other exports (another key) and unfinished builds. A process
    that loaded an old export keeps its session: the file is already read."""
    pattern = re.compile(rf"^\.?{re.escape(name)}-[0-9a-f_A-Za-z]+$")
    for entry in os.listdir(root):
        full = os.path.join(root, entry)
        if full != keep and pattern.match(entry) and os.path.isdir(full):
            shutil.rmtree(full, ignore_errors=True)


def export_module(module, sample: dict, output_names: list[str], path: str) -> None:
    """Export `module`, whose forward takes `*tensors` (those of `sample`, in its
    order), to `path`; every input dynamic in batch (dim 0) and sequence (dim 1)."""
    import torch

    # onnxscript's optimiser logs every initializer it merges at INFO (hundreds of lines per
    # export), and the exporter warns of each torchvision operator it cannot register.
    logging.getLogger("onnx_ir").setLevel(logging.WARNING)
    # Its optimiser and rewriter note every node they skip at INFO: dozens of lines in
    # the serve command's output at the first start, none of them actionable.
    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    names = list(sample)
    with warnings.catch_warnings():
        # Its notes on how it renamed the dynamic axes; the export is checked against torch anyway.
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            module,
            tuple(sample[name] for name in names),
            path,
            dynamo=True,
            input_names=names,
            output_names=output_names,
            dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in names),),  # one entry: the *tensors
            external_data=True,  # large models pass protobuf's 2 GB limit
            verbose=False,
        )


def failure_reason(exc: Exception) -> str:
    """An export error in one line, for a log line and a manifest (torch's run to pages)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"
