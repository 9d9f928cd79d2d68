"""A hyperparameter search's resume state kept in the shared store (S3), so that
a search taken over by a worker on another host skips the runs already finished
rather than training every trial again (training/search.py).

What a resume needs is the search's state.json (its finished runs and their
measures) and the files of the best whole-set run so far (the one the search
publishes if none beats it; the child deletes the others). The worker, not the
child, copies them while the child trains, each as one tar object:
training/<job id>/search/trial-<n>.tar (a finished whole-set run's output,
put once) and training/<job id>/search/state-<runs>.tar (state.json, named by
its number of finished runs). A state goes up only once the outputs it may
publish are in the bucket (one past the bundle limit keeps the bucket at the
older state and its best), and a state is only put when state.json did not
change while those were copied: the child deletes the previous best's output
only after saving a state that names a better one, so the bucket's newest state
always has its best run's output beside it. Older states and outputs no run
needs go once the new state is there.

A trial's epoch checkpoints are not copied: a run taken over trains again from
its start (a trial is one short run; its finished neighbours are what counts).

Packed without following links (training/checkpoint_store.pack_no_links) and
fetched as bundles (uploads/bundles.fetch: plain files inside the folder, within
the bundle limits). With local storage nothing is copied: every process shares
one data dir.
"""

import glob
import io
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile

from core.settings import Settings
from uploads import bundles

from .checkpoint_store import BucketMirror, pack_no_links, tar_member

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
# The folder of a whole-set run's output, as training/search.py names it.
WHOLE_SET = f"share-{1.0:.6f}"
_STATE_KEY = re.compile(r"state-(\d+)\.tar")
_TRIAL_KEY = re.compile(r"trial-(\d+)\.tar")
_WHOLE_SET_RUN = re.compile(r"(\d+)@1\.000000")


def search_prefix(storage, job_id: str) -> str:
    return storage.named(f"training/{job_id}/search/")


def stored_search(storage, job_id: str) -> tuple[dict[int, str], dict[int, str]]:
    """({runs: key} of the states, {trial: key} of the outputs) the bucket holds for the job."""
    prefix = search_prefix(storage, job_id)
    with bundles.storage_errors(f"listing {prefix}"):
        keys = storage.list_keys(prefix)
    states, trials = {}, {}
    for key in keys:
        name = key.removeprefix(prefix)
        if match := _STATE_KEY.fullmatch(name):
            states[int(match[1])] = key
        elif match := _TRIAL_KEY.fullmatch(name):
            trials[int(match[1])] = key
    return states, trials


def read_state(search_dir: str, max_bytes: int) -> tuple[bytes, dict] | None:
    """(the bytes, the runs) of the search's state.json, opened without following
    a link; None when there is none, it is not a state (the child's file) or it
    is over the bundle limit (INFER_UPLOAD_MAX_UNCOMPRESSED_BYTES: no worker could fetch it)."""
    try:
        fd = os.open(os.path.join(search_dir, STATE_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            return None
        body = file.read(max_bytes + 1)
    if len(body) > max_bytes:
        return None
    try:
        state = json.loads(body)
    except ValueError:
        return None
    runs = state.get("runs") if isinstance(state, dict) else None
    return (body, runs) if isinstance(runs, dict) else None


def publishable(runs: dict) -> set[int]:
    """The trials whose whole-set run finished and was measured: the ones the search may publish."""
    return {int(match[1]) for key, done in runs.items()
            if (match := _WHOLE_SET_RUN.fullmatch(key)) and isinstance(done, dict) and done.get("ok")}


def output_dir(search_dir: str, trial: int) -> str:
    return os.path.join(search_dir, f"trial-{trial}", WHOLE_SET, "output")


def restore_search(config: Settings, storage, job_id: str, search_dir: str) -> int:
    """Fetch the bucket's search state into `search_dir` when it holds more
    finished runs than the one here; the number of runs fetched (0 when this
    worker is as far, as when it ran the job's last attempt).

    StorageUnreachable or BundleRejected when the bucket fails or holds an
    object the rules refuse; the local folder is then left as it was."""
    states, trials = stored_search(storage, job_id)
    if not states:
        return 0
    runs = max(states)
    limits = bundles.BundleLimits.from_config(config)
    local = read_state(search_dir, limits.max_bytes)
    if local is not None and len(local[1]) >= runs:
        return 0
    job_folder = os.path.dirname(search_dir)
    for leftover in glob.glob(os.path.join(glob.escape(job_folder), ".search-state-*")):  # a worker killed mid-fetch
        shutil.rmtree(leftover, ignore_errors=True)
    staged = tempfile.mkdtemp(prefix=".search-state-", dir=job_folder)
    try:
        bundles.fetch(storage, states[runs], os.path.join(staged, "state"), limits)
        fetched = read_state(os.path.join(staged, "state"), limits.max_bytes)
        if fetched is None:
            raise bundles.BundleRejected(f"{states[runs]} holds no search state.")
        search = os.path.join(staged, "search")
        os.makedirs(search)
        for trial in sorted(publishable(fetched[1]) & set(trials)):
            bundles.fetch(storage, trials[trial], output_dir(search, trial), limits)
        os.replace(os.path.join(staged, "state", STATE_FILE), os.path.join(search, STATE_FILE))
        # All fetched: what this worker had is older and goes (the child's folder; a link in it is never followed).
        if os.path.islink(search_dir):
            os.unlink(search_dir)
        shutil.rmtree(search_dir, ignore_errors=True)
        os.rename(search, search_dir)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return len(fetched[1])


class SearchMirror(BucketMirror):
    """Keeps the bucket's copy of one search's resume state: sync() after each
    look, or start() a thread while the child trains."""

    kind, copies = "search", "its search's state and outputs"

    def __init__(self, config: Settings, storage, job_id: str, search_dir: str):
        super().__init__(job_id)
        self.storage, self.search_dir = storage, search_dir
        self.limits = bundles.BundleLimits.from_config(config)
        self.states: set[int] | None = None  # listed on the first sync
        self.trials: set[int] = set()
        self.refused: set[int] = set()  # outputs past the bundle limits

    def sync(self) -> None:
        """Put the search's newest state, after the outputs it may publish, then
        delete what it no longer needs (StorageUnreachable, BundleRejected)."""
        if self.states is None:
            states, trials = stored_search(self.storage, self.job_id)
            self.states, self.trials = set(states), set(trials)
        before = read_state(self.search_dir, self.limits.max_bytes)
        if before is None or not before[1] or len(before[1]) in self.states:
            return
        body, runs = before
        present = {trial for trial in publishable(runs) if os.path.isdir(output_dir(self.search_dir, trial))}
        for trial in sorted(present - self.trials - self.refused):
            try:
                if self._put(f"trial-{trial}", lambda tar_path: pack_no_links(
                        output_dir(self.search_dir, trial), tar_path, self.limits)):
                    self.trials.add(trial)
            except bundles.BundleRejected as exc:  # the search goes on; a resume elsewhere trains it again
                self.refused.add(trial)
                log.warning("job %s: trial %s's output stays on this worker only: %s", self.job_id, trial, exc)
        if present - self.trials:
            return  # an output it may publish is not in the bucket (refused): the bucket keeps the older state
        after = read_state(self.search_dir, self.limits.max_bytes)
        if after is None or after[0] != body:
            return  # a run finished meanwhile (the best's output may be another): the next look
        if not self._put(f"state-{len(runs)}", lambda tar_path: _pack_state(body, tar_path)):
            return
        for older in sorted(self.states):
            bundles.delete(self.storage, f"{search_prefix(self.storage, self.job_id)}state-{older}.tar")
        self.states = {len(runs)}
        for trial in sorted(self.trials - present):  # deleted by the child: a better run is the best
            bundles.delete(self.storage, f"{search_prefix(self.storage, self.job_id)}trial-{trial}.tar")
            self.trials.discard(trial)

    def _put(self, name: str, pack) -> bool:
        """Pack with `pack(tar_path)` and put as `name`; False when what it packs went meanwhile."""
        # Beside the job's folder, not in it: the copy never counts in its measured size.
        handle, tar_path = tempfile.mkstemp(prefix=f".{self.job_id}-{name}-", suffix=".tar",
                                            dir=os.path.dirname(os.path.dirname(self.search_dir)))
        os.close(handle)
        try:
            try:
                pack(tar_path)
            except (FileNotFoundError, NotADirectoryError):
                return False
            with bundles.storage_errors(f"storing the search's {name} of job {self.job_id}"):
                self.storage.put_file(f"{search_prefix(self.storage, self.job_id)}{name}.tar", tar_path)
            return True
        finally:
            os.remove(tar_path)


def _pack_state(body: bytes, tar_path: str) -> None:
    """The state.json as read (its bytes checked unchanged since), alone in a tar."""
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as archive:
        member = tar_member(STATE_FILE, tarfile.REGTYPE, len(body))
        archive.addfile(member, io.BytesIO(body))

