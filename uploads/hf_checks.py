"""An uploaded Hugging Face folder is checked before it costs the service anything.

The built-in loaders run in the service's process: a folder whose config.json
describes a huge model (with almost no weights) would make transformers allocate
that model before finding out, and a hostile tokenizer would run its regex on
every request. So before HfFolder's build loads anything:

1. each file the loaders read into the service's memory besides the weights (JSON
   files, tokenizer files) must be at most HF_FILE_MAX_MB;
2. uploads/hf_inspect.py, in a process of its own, builds the model from its
   config on the meta device (no tensor memory) with the class the loader would
   use, compares it with the safetensors headers, and lists the folder's regex
   patterns. That process runs in the version's sandbox (its own uid, cgroup,
   memory cap HF_CHECK_MEMORY_MB and limit HF_CHECK_TIMEOUT_S): building even a
   meta model from config.json costs Python objects and CPU time in proportion to
   what it declares (10,000 layers: 28 s and 0.5 GB here), and the service's
   process must pay none of it. Where no sandbox can be had (INFER_SANDBOX=bwrap
   on a host without bubblewrap) it runs as a plain child process under the same
   limits, which it also sets on itself: it runs no uploaded code, only parsers;
3. the model's size as loaded (parameters and buffers, halved floats in half
   precision) must fit HF_MAX_MODEL_MB and MODEL_MEMORY_BUDGET_MB;
4. its weights must fit the model, and its regex patterns be known ones.

Only safetensors weights are accepted: a pickle (pytorch_model.bin) can run code
when it is read and shows nothing of its tensors before. The build is the gate:
a replica that fetches a built version's files (uploads/version_bundles.py) gets
the files this check passed, from the service's own bucket, so it does not pay
for the check again.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile

from core.settings import Settings
from model_registry.catalogue import (
    CAUSAL_LM,
    CLIP,
    CROSS_ENCODER,
    EMOTION_CLASSIFIER,
    EXTRACTIVE_QA,
    SENTENCE_TRANSFORMER,
    SEQ2SEQ,
    ZERO_SHOT_NLI,
)
from model_registry.loaders import LOADERS, clip, cross_encoder, nli, seq2seq
from model_registry.loaders.common import SHOWN_KEYS, MissingWeights
from sandbox import Bind, Job
from sandbox.system import service_package_paths

from . import tokenizer_check
from .build_errors import BuildFailed

HERE = os.path.dirname(os.path.abspath(__file__))
INSPECT_SCRIPT = os.path.join(HERE, "hf_inspect.py")
SANDBOX_SCRIPT = "/opt/infer/hf_inspect.py"
# The script's module beside it, bound beside it in the sandbox.
META_CHECK = os.path.join(HERE, "hf_meta_check.py")
# The transformers class each built-in loader builds (sentence-transformers
# folders are read module by module from their modules.json).
MODEL_CLASSES = {
    CAUSAL_LM: "AutoModelForCausalLM",
    SEQ2SEQ: "AutoModelForSeq2SeqLM",
    EMOTION_CLASSIFIER: "AutoModelForSequenceClassification",
    ZERO_SHOT_NLI: "AutoModelForSequenceClassification",
    CROSS_ENCODER: "AutoModelForSequenceClassification",
    EXTRACTIVE_QA: "AutoModelForQuestionAnswering",
    CLIP: "CLIPModel",
}
# What each loader's model is for, in the words of its MissingWeights message.
PURPOSES = {
    CAUSAL_LM: "text-generation",
    SEQ2SEQ: seq2seq.PURPOSE,
    EMOTION_CLASSIFIER: "emotion",
    ZERO_SHOT_NLI: nli.PURPOSE,
    CROSS_ENCODER: cross_encoder.PURPOSE,
    EXTRACTIVE_QA: "qa",
    CLIP: clip.PURPOSE,
    SENTENCE_TRANSFORMER: "text-vectorisation",
}
if set(LOADERS) - set(MODEL_CLASSES) - {SENTENCE_TRANSFORMER} or set(LOADERS) - set(PURPOSES):
    raise ImportError("uploads/hf_checks.py: a built-in loader has no model class or purpose here")  # add it
# Most regex patterns listed (a tokenizer has a handful).
MAX_PATTERNS = 1000
# The check's environment: quiet libraries, no thread pools (each thread's
# malloc arena reserves address space under the cap).
CHILD_ENV = {"HF_DEACTIVATE_ASYNC_LOAD": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "TOKENIZERS_PARALLELISM": "false", "MALLOC_ARENA_MAX": "2", "HF_HUB_OFFLINE": "1",
             "TRANSFORMERS_OFFLINE": "1"}
STDERR_TAIL = 2000


def check_hf_folder(version, loader: str, say) -> dict:
    """Check the folder of `version` (uploads.formats.base.Version) for `loader`;
    BuildFailed saying why it cannot be served. The inspection's answer."""
    settings = version.settings
    check_file_sizes(version.files_dir, settings.hf_file_max_mb)
    result = inspect_folder(version, loader, say)
    check_size(result, version.half, settings)
    check_weights_fit(result["modules"], PURPOSES[loader])
    patterns = result.get("patterns", [])
    tokenizer_check.check_patterns(patterns, truncated=len(patterns) >= MAX_PATTERNS)
    classes = ", ".join(f"{m['class']} ({m['path']})" if m["path"] != "." else m["class"] for m in result["modules"])
    say(f"checked before loading: {classes}, {size_as_loaded(result, version.half) / 2**20:.1f} MiB in memory; "
        f"{len(patterns)} tokenizer regex pattern(s), all known")
    return result


def check_file_sizes(files_dir: str, max_mb: int) -> None:
    """BuildFailed for a JSON or tokenizer file over max_mb MiB (0: no limit): the
    loaders parse them in the service's process (a tokenizer stays in its memory)."""
    if max_mb <= 0:
        return
    for folder, _dirs, files in os.walk(files_dir):
        for name in files:
            path = os.path.join(folder, name)
            read_in_memory = name.lower().endswith(".json") or tokenizer_check.is_tokenizer_file(name)
            if read_in_memory and not os.path.islink(path) and os.path.getsize(path) > max_mb * 2**20:
                raise BuildFailed(
                    f"{os.path.relpath(path, files_dir)} is {os.path.getsize(path) / 2**20:,.0f} MiB; a JSON or "
                    f"tokenizer file may be at most {max_mb} MiB (INFER_HF_FILE_MAX_MB), as the service reads it "
                    "into its own memory.")


def check_weights_fit(modules: list[dict], purpose: str) -> None:
    """MissingWeights (worded as the loaders word it) or BuildFailed for the first
    module whose weights do not fit the model its config describes."""
    for module in modules:
        missing = module["missing"]
        if missing:
            shown = ", ".join(missing[:SHOWN_KEYS]) + (f" and {len(missing) - SHOWN_KEYS} more"
                                                       if len(missing) > SHOWN_KEYS else "")
            raise MissingWeights(
                f"The checkpoint has no weights for {shown} ({module['class']} needs them for {purpose}): the model "
                f"would answer with random numbers. Upload a checkpoint trained for {purpose}.")
        if module["problem"]:
            raise BuildFailed(f"The weights do not fit the model config.json describes: {module['problem']}. "
                              "Upload the weights saved with that config.")


def size_as_loaded(result: dict, half: bool) -> int:
    """Bytes the model takes once placed: floats in 2 bytes each in half precision."""
    if not half:
        return int(result["nbytes"])
    return int(result["nbytes"]) - int(result["float_nbytes"]) + 2 * int(result["float_elements"])


def size_limit(settings: Settings) -> tuple[int, str]:
    """(the most bytes one uploaded model may take, the setting that says so); 0: none."""
    limits = [(settings.hf_max_model_mb, "INFER_HF_MAX_MODEL_MB"),
              (settings.model_memory_budget_mb, "INFER_MODEL_MEMORY_BUDGET_MB")]
    mib, name = min(((mib, name) for mib, name in limits if mib > 0), default=(0, ""))
    return mib * 2**20, name


def check_size(result: dict, half: bool, settings: Settings) -> None:
    size = size_as_loaded(result, half)
    limit, name = size_limit(settings)
    if limit and size > limit:
        raise BuildFailed(
            f"config.json describes a model of {size / 2**20:,.0f} MiB as loaded"
            f"{' in half precision' if half else ''}; an uploaded model may take at most {limit / 2**20:,.0f} MiB "
            f"({name}). Upload a smaller model, or ask the operator to raise the limit.")


# --- the inspection process -----------------------------------------------------------

def inspect_folder(version, loader: str, say) -> dict:
    """Run hf_inspect.py on the version's files; its answer, or BuildFailed."""
    settings = version.settings
    timeout_s = settings.hf_check_timeout_s
    memory_mb = settings.hf_check_memory_mb
    request = {"model_class": MODEL_CLASSES.get(loader), "sentence_transformers": loader == SENTENCE_TRANSFORMER,
               "site_dirs": service_package_paths(), "memory_bytes": memory_mb * 2**20,
               "cpu_seconds": int(timeout_s) + 1, "max_patterns": MAX_PATTERNS}
    process, kill, where = _start(version, request, memory_mb, timeout_s)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill(process)
        raise BuildFailed(f"Checking the folder took over {timeout_s:g} s (INFER_HF_CHECK_TIMEOUT_S): its "
                          "config.json describes a model too large to build even without weights.") from None
    finally:
        if process.poll() is None:
            kill(process)
    say(f"checked {where}")
    answer = _answer(stdout)
    if answer is None or answer.get("out_of_memory"):
        tail = stderr.decode("utf-8", errors="replace")[-STDERR_TAIL:]
        if tail.strip():
            say(f"the check's output:\n{tail}")
        killed = process.returncode < 0 or process.returncode > 128  # by a signal: its memory or CPU limit
        if answer is None and not killed:
            raise BuildFailed(f"Checking the folder failed (exit status {process.returncode}); the build log "
                              "shows its output.")
        raise BuildFailed(f"Checking the folder ran out of its {memory_mb} MiB (INFER_HF_CHECK_MEMORY_MB) or its "
                          f"CPU time: its config.json describes a model too large to build even without weights, "
                          "or a file too large to read.")
    if answer.get("setup_failed"):  # the service's installation, not the upload
        raise BuildFailed(f"The folder could not be checked here ({answer['setup_failed']}); tell the operator.")
    if not answer.get("ok"):
        raise BuildFailed(f"The Hugging Face folder cannot be loaded: {answer.get('problem')}")
    return answer


def _answer(stdout: bytes) -> dict | None:
    lines = stdout.decode("utf-8", errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _start(version, request: dict, memory_mb: int, timeout_s: float):
    """(the process, how to kill it, where it runs): in the version's sandbox when
    one is available, else as a plain child under the same limits."""
    python = sys._base_executable  # the interpreter behind the service's venv: the sandbox binds it
    model_sandbox = version.model_sandbox
    sandbox = getattr(model_sandbox, "sandbox", None)
    if sandbox is not None and sandbox.problem() is None:
        uid = sandbox.uid_for(version.id)
        sandbox.grant(version.files_dir, uid)
        limits = dataclasses.replace(model_sandbox.limits(), memory_bytes=memory_mb * 2**20,
                                     cpu_seconds=int(timeout_s) + 1)
        job = Job([python, "-I", "-S", SANDBOX_SCRIPT, "/model", json.dumps(request)],
                  [Bind(version.files_dir, "/model"), Bind(INSPECT_SCRIPT, SANDBOX_SCRIPT),
                   Bind(META_CHECK, "/opt/infer/hf_meta_check.py")],
                  uid=uid, limits=limits, workdir="/tmp", env=dict(CHILD_ENV))
        process = sandbox.spawn(job, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return process, sandbox.kill, f"in the sandbox ({sandbox.kind})"
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tempfile.gettempdir(), **CHILD_ENV}
    process = subprocess.Popen([python, "-I", "-S", INSPECT_SCRIPT, version.files_dir, json.dumps(request)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, cwd=version.files_dir, start_new_session=True)
    return process, _kill_group, "in a child process (no sandbox is available here)"


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
