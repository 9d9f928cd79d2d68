"""What an epoch checkpoint of a transformers Trainer is, told without importing
transformers: the training child resumes from the newest complete one
(hf_callback.last_checkpoint), and the worker copies complete ones to the
shared store (training/checkpoint_store.py).

The Trainer writes a checkpoint's weights, optimizer and RNG states first and
its trainer_state.json last; a trainer's callback may add files after that (its
checkpoint_files). A folder without all of them, or with half a
trainer_state.json, is a save in progress or one a crash cut short.
"""

import json
import os
import re
import stat

STATE_FILE = "trainer_state.json"
NAME = re.compile(r"checkpoint-([0-9]+)")
# A Trainer's state is its log history and a few numbers: kilobytes.
MAX_STATE_BYTES = 64 * 1024**2


def numbered(checkpoint_dir: str) -> list[tuple[int, str]]:
    """(step, folder name) of every checkpoint folder there, newest first."""
    if not os.path.isdir(checkpoint_dir):
        return []
    return sorted(((int(match[1]), name) for name in os.listdir(checkpoint_dir)
                   if (match := NAME.fullmatch(name))), reverse=True)


def saved_state(folder: str) -> dict | None:
    """The checkpoint's trainer state, or None while it is missing or half-written.

    The worker reads it too, in a folder the sandboxed child writes: never
    through a link, never from a FIFO (opening one would wait for a writer),
    never past MAX_STATE_BYTES."""
    try:
        fd = os.open(os.path.join(folder, STATE_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as state:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = state.read(MAX_STATE_BYTES + 1)
    try:
        loaded = json.loads(data) if len(data) <= MAX_STATE_BYTES else None
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None


def is_complete(folder: str, required: tuple[str, ...] = ()) -> bool:
    return saved_state(folder) is not None and all(os.path.isfile(os.path.join(folder, name)) for name in required)
