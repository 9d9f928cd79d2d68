"""A training job's epoch checkpoints kept in the shared store (S3), so that a
job taken over by a worker on another host resumes from its last epoch rather
than from epoch 1.

The worker, not the child, talks to the bucket (the child has no credentials).
While the child trains, a thread of the worker copies each checkpoint once it
is complete (trainers/checkpoints.py) as one tar object,
training/<job id>/checkpoints/checkpoint-<step>.tar: an S3 PUT is whole or
absent, so the bucket never holds half a checkpoint. The bucket keeps what a
resume needs of what the Trainer keeps (save_total_limit: the best epoch and
the newest): the newest checkpoint and the best one its state names; a
checkpoint the Trainer rotates out is deleted from the bucket once the newer
one is there. A worker starting the job fetches the bucket's checkpoints when
they are newer than its own (a bundle, read as untrusted: uploads/bundles.py),
and the job's objects go when it ends.

The checkpoint folders are the child's: it can put a link where a file was
between two looks. They are packed through file descriptors opened without
following links (a link or special file is left out), so the worker never
reads a host file into the bucket on the child's behalf.

With local storage nothing is copied: every process of the service shares one
data dir, and the checkpoints are already there.
"""

import json
import logging
import os
import stat
import tarfile
import tempfile
import threading

from core.settings import Settings
from trainers.checkpoints import NAME, STATE_FILE, is_complete, numbered, saved_state
from uploads import bundles

log = logging.getLogger(__name__)

# Seconds between the worker's looks for a new complete checkpoint while the child trains.
MIRROR_S = 2.0
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def checkpoints_prefix(storage, job_id: str) -> str:
    return storage.named(f"training/{job_id}/checkpoints/")


def checkpoint_key(storage, job_id: str, name: str) -> str:
    return f"{checkpoints_prefix(storage, job_id)}{name}.tar"


def stored_checkpoints(storage, job_id: str) -> dict[str, str]:
    """{checkpoint folder name: its key} of what the bucket holds for the job."""
    prefix = checkpoints_prefix(storage, job_id)
    with bundles.storage_errors(f"listing {prefix}"):
        keys = storage.list_keys(prefix)
    found = {}
    for key in keys:
        name = key.removeprefix(prefix).removesuffix(".tar")
        if NAME.fullmatch(name) and key == checkpoint_key(storage, job_id, name):
            found[name] = key
    return found


def _step(name: str) -> int:
    return int(NAME.fullmatch(name)[1])


def forget_checkpoints(storage, job_id: str) -> None:
    """Delete what the bucket holds to resume the job, everything under
    training/<job id>/ (its checkpoints, a search's state: training/search_store.py),
    once it ended: they serve nothing. A bucket that does not answer leaves them,
    logged: the job's end stands."""
    if not bundles.shared(storage):
        return
    prefix = storage.named(f"training/{job_id}/")
    try:
        with bundles.storage_errors(f"listing {prefix}"):
            keys = storage.list_keys(prefix)
        for key in keys:
            bundles.delete(storage, key)
    except bundles.StorageUnreachable as exc:
        log.warning("job %s: its checkpoints stay in the bucket: %s", job_id, exc)


def restore_checkpoints(config: Settings, storage, job_id: str, checkpoint_dir: str,
                        required: tuple[str, ...] = ()) -> list[str]:
    """Fetch the bucket's checkpoints into `checkpoint_dir` when its newest is
    newer than the newest complete one here; the names fetched (none when this
    worker already has the newest, as when it trained the job's last attempt).

    StorageUnreachable or BundleRejected when the bucket fails or holds a
    checkpoint the rules refuse; a checkpoint fetched before that stays."""
    in_bucket = stored_checkpoints(storage, job_id)
    if not in_bucket:
        return []
    local = [step for step, name in numbered(checkpoint_dir)
             if is_complete(os.path.join(checkpoint_dir, name), required)]
    if local and max(local) >= max(_step(name) for name in in_bucket):
        return []
    limits = bundles.BundleLimits.from_config(config)
    fetched = []
    # Oldest first: the Trainer rotates checkpoints out by modification time.
    for name in sorted(in_bucket, key=_step):
        target = os.path.join(checkpoint_dir, name)
        bundles.fetch(storage, in_bucket[name], target, limits)
        _point_state_here(target, checkpoint_dir)
        fetched.append(name)
    return fetched


def _point_state_here(folder: str, checkpoint_dir: str) -> None:
    """The Trainer's state names its best checkpoint by the path it had on the
    worker that saved it; a run resumed past its last epoch loads the best model
    from that path, so it is made this worker's."""
    state = saved_state(folder)
    best = (state or {}).get("best_model_checkpoint")
    if not isinstance(best, str) or not NAME.fullmatch(os.path.basename(best.rstrip("/"))):
        return
    here = os.path.join(checkpoint_dir, os.path.basename(best.rstrip("/")))
    if best != here:
        state["best_model_checkpoint"] = here
        with open(os.path.join(folder, STATE_FILE), "w") as out:
            json.dump(state, out, indent=2, sort_keys=True)


class BucketMirror:
    """A copy in the bucket that a thread of the worker keeps while the child
    trains: sync() every MIRROR_S, and once more by the caller when the attempt
    ends. A subclass says what it copies (sync) and names it (`copies`)."""

    kind = "files"  # the thread's name, "<kind>-<job id>"
    copies = "its files"  # for the log: "job <id>: <copies> were not copied to the bucket"

    def __init__(self, job_id: str):
        self.job_id = job_id
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-{self.job_id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Wait for the copy under way, if any, to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(MIRROR_S):
            self.sync_logged()

    def sync_logged(self) -> None:
        """sync(); a failure is logged and the job trains on: what it copies is
        still on this worker's disk, and the next look tries again."""
        try:
            self.sync()
        except (bundles.StorageUnreachable, bundles.BundleRejected, OSError) as exc:
            log.warning("job %s: %s were not copied to the bucket: %s", self.job_id, self.copies, exc)


class CheckpointMirror(BucketMirror):
    """Keeps the bucket's copy of one attempt's checkpoints: sync() after each
    look, or start() a thread while the child trains."""

    kind, copies = "checkpoints", "its checkpoints"

    def __init__(self, config: Settings, storage, job_id: str, checkpoint_dir: str,
                 required: tuple[str, ...] = ()):
        super().__init__(job_id)
        self.storage, self.checkpoint_dir, self.required = storage, checkpoint_dir, required
        self.limits = bundles.BundleLimits.from_config(config)
        self.stored: set[str] | None = None  # the names in the bucket, listed on the first sync
        self.refused: set[str] = set()  # past the bundle limits

    def wanted(self) -> tuple[str | None, set[str]]:
        """(the newest checkpoint whose trainer state is written, the ones a resume
        needs: it and the best its state names). A folder neither newest nor best
        is one the Trainer is rotating out: never copied, it could be half gone."""
        for _step_number, name in numbered(self.checkpoint_dir):
            state = saved_state(os.path.join(self.checkpoint_dir, name))
            if state is None:
                continue  # being written
            best = state.get("best_model_checkpoint")
            best_name = os.path.basename(best.rstrip("/")) if isinstance(best, str) else None
            kept = {name} | ({best_name} if best_name and NAME.fullmatch(best_name) else set())
            return name, {kept_name for kept_name in kept
                          if os.path.isdir(os.path.join(self.checkpoint_dir, kept_name))}
        return None, set()

    def sync(self) -> None:
        """Copy what a resume needs and is complete, then delete what the bucket
        holds beyond it, once the newest is there (StorageUnreachable, BundleRejected)."""
        if self.stored is None:
            self.stored = set(stored_checkpoints(self.storage, self.job_id))
        newest, wanted = self.wanted()
        if newest is None:
            return
        for name in sorted(wanted - self.stored - self.refused, key=_step):
            folder = os.path.join(self.checkpoint_dir, name)
            if not is_complete(folder, self.required):
                continue
            try:
                if self._put(name, folder):
                    self.stored.add(name)
            except bundles.BundleRejected as exc:  # too large to fetch: said once, the job trains on
                self.refused.add(name)
                log.warning("job %s: %s stays on this worker only: %s", self.job_id, name, exc)
        if newest in self.stored:
            for name in sorted(self.stored - wanted):
                bundles.delete(self.storage, checkpoint_key(self.storage, self.job_id, name))
                self.stored.discard(name)

    def _put(self, name: str, folder: str) -> bool:
        """Pack and put one checkpoint; False when it went while being packed."""
        # Beside the job's folder, not in it: the copy never counts in its measured size.
        handle, tar_path = tempfile.mkstemp(prefix=f".{self.job_id}-{name}-", suffix=".tar",
                                            dir=os.path.dirname(os.path.dirname(self.checkpoint_dir)))
        os.close(handle)
        try:
            try:
                pack_no_links(folder, tar_path, self.limits)
            except (FileNotFoundError, NotADirectoryError):
                return False
            if not is_complete(folder, self.required):  # rotated out meanwhile
                return False
            with bundles.storage_errors(f"storing {name} of job {self.job_id}"):
                self.storage.put_file(checkpoint_key(self.storage, self.job_id, name), tar_path)
            return True
        finally:
            os.remove(tar_path)


def pack_no_links(folder: str, tar_path: str, limits: bundles.BundleLimits) -> None:
    """The folder's regular files and folders as a tar, each opened without
    following a link (links and special files are left out); BundleRejected
    past the limits, which a worker fetching it would refuse."""
    total = members = 0
    pending = [(os.open(folder, _OPEN_DIR), "")]
    try:
        with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as archive:
            while pending:
                directory, relative = pending.pop()
                try:
                    for name in sorted(os.listdir(directory)):
                        arcname = relative + name
                        mode = os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode
                        if stat.S_ISDIR(mode):
                            pending.append((os.open(name, _OPEN_DIR, dir_fd=directory), arcname + "/"))
                            archive.addfile(tar_member(arcname, tarfile.DIRTYPE, 0))
                        elif stat.S_ISREG(mode):
                            with os.fdopen(os.open(name, _OPEN_FILE, dir_fd=directory), "rb") as source:
                                size = os.fstat(source.fileno())
                                if not stat.S_ISREG(size.st_mode):
                                    continue
                                total += size.st_size
                                if total > limits.max_bytes:
                                    raise bundles.BundleRejected(
                                        f"The checkpoint holds more than {limits.max_bytes} bytes "
                                        "(INFER_UPLOAD_MAX_UNCOMPRESSED_BYTES): other workers could not fetch it.")
                                archive.addfile(tar_member(arcname, tarfile.REGTYPE, size.st_size), source)
                        else:
                            continue
                        members += 1
                        if members > limits.max_members:
                            raise bundles.BundleRejected(
                                f"The checkpoint holds more than {limits.max_members} entries: other workers "
                                "could not fetch it.")
                finally:
                    os.close(directory)
    finally:
        for directory, _relative in pending:
            os.close(directory)


def tar_member(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.size, member.mode = kind, size, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return member
