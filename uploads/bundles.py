"""A folder kept in S3 as one tar object, and put back in place on another replica.

Replicas share the database and the bucket but each has its own data dir: what
one replica built, trained or parsed goes to the bucket as a bundle, and a
replica that lacks the folder fetches it on first use (version_bundles.py,
training/dataset_bundles.py).

A bundle is written by the service, but whoever can write to the bucket could
replace it, so it is read like an upload: its size is checked before and while
it is downloaded, every member is checked before anything is written (plain
files and folders only, relative paths without "..", the total within the
upload settings), and each member is written by hand, never with extractall.
It is unpacked into a temporary folder renamed into place: a half-fetched
folder never appears, and a failed fetch leaves nothing behind. A lock file per
folder makes one process of the replica fetch while the others wait.
"""

import contextlib
import fcntl
import glob
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass

from core.settings import Settings

from .storage import UploadTooLarge

# A bundle holds what an upload may, plus the folders and the few files the
# service adds beside them (a parsed dataset's label folders, its parse result).
EXTRA_MEMBERS = 2_000
# Each member costs a header and padding in the tar, beyond its bytes.
MEMBER_OVERHEAD = 1024


def shared(storage) -> bool:
    """Whether replicas share this storage (S3), so a folder must travel as a bundle."""
    return getattr(storage, "kind", "") == "s3"


class BundleRejected(Exception):
    """A bundle that breaks the rules above, or a folder too large to bundle."""


class StorageUnreachable(Exception):
    """The bucket did not answer (or refused the service's credentials)."""


@dataclass(frozen=True)
class BundleLimits:
    max_bytes: int  # of the files, unpacked
    max_members: int

    @classmethod
    def from_config(cls, config: Settings) -> "BundleLimits":
        return cls(config.upload_max_uncompressed_bytes, config.upload_max_members + EXTRA_MEMBERS)

    @property
    def max_object_bytes(self) -> int:
        return self.max_bytes + (self.max_members + 2) * MEMBER_OVERHEAD


@contextlib.contextmanager
def storage_errors(what: str):
    """botocore's failures (no answer, refused credentials) as StorageUnreachable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise StorageUnreachable(f"{what}: the S3 store did not answer as expected ({exc}); check that "
                                 "INFER_S3_ENDPOINT_URL and INFER_S3_BUCKET reach it with the service's "
                                 "credentials.") from None


@contextlib.contextmanager
def folder_lock(lock_dir: str, name: str, wait: bool = True):
    """Held by one process (and one thread) at a time; yields False when wait is
    False and another holds it. An flock goes with its process, so a replica
    killed mid-fetch leaves no stale lock."""
    os.makedirs(lock_dir, exist_ok=True)
    with open(os.path.join(lock_dir, f"{name}.lock"), "a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def pack(folder: str, tar_path: str, limits: BundleLimits, leave_out: tuple[str, ...] = ()) -> None:
    """The folder's plain files and folders (links left out) as a tar; BundleRejected
    past the limits, which a replica would refuse to unpack."""
    total = members = 0
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as archive:
        for directory, dirs, files in os.walk(folder):
            relative = os.path.relpath(directory, folder)
            dirs[:] = sorted(d for d in dirs if os.path.join(relative, d).removeprefix("./") not in leave_out)
            for name in [*dirs, *sorted(files)]:
                path = os.path.join(directory, name)
                arcname = os.path.normpath(os.path.join(relative, name))
                if arcname in leave_out or os.path.islink(path):
                    continue
                if not (os.path.isfile(path) or os.path.isdir(path)):
                    continue
                members += 1
                total += os.path.getsize(path) if os.path.isfile(path) else 0
                if members > limits.max_members or total > limits.max_bytes:
                    raise BundleRejected(
                        f"The folder holds more than {limits.max_members} entries or {limits.max_bytes} bytes "
                        "(INFER_UPLOAD_MAX_MEMBERS, INFER_UPLOAD_MAX_UNCOMPRESSED_BYTES): other replicas could "
                        "not fetch it.")
                archive.add(path, arcname=arcname, recursive=False)


def _member_problem(member: tarfile.TarInfo) -> str | None:
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    if ".." in parts:
        return f"path leaving the folder {name!r}"
    if not (member.isreg() or member.isdir()):
        return f"link or special file {name!r}"
    return None


def check_members(archive: tarfile.TarFile, limits: BundleLimits) -> list[tarfile.TarInfo]:
    """Every member, read from the headers alone and checked before a byte is written."""
    members, total = [], 0
    for member in archive:  # one header at a time: a bundle of a million members stops at the limit
        members.append(member)
        if len(members) > limits.max_members:
            raise BundleRejected(f"The bundle has more than {limits.max_members} members.")
        problem = _member_problem(member)
        if problem:
            raise BundleRejected(f"The bundle holds a {problem}.")
        total += member.size if member.isreg() else 0
        if total > limits.max_bytes:
            raise BundleRejected(f"The bundle unpacks to more than {limits.max_bytes} bytes "
                                 "(INFER_UPLOAD_MAX_UNCOMPRESSED_BYTES).")
    return members


def unpack(tar_path: str, destination: str, limits: BundleLimits) -> None:
    """Check, then write each member into `destination` (which must not exist yet)."""
    try:
        archive = tarfile.open(tar_path, "r:")
    except tarfile.TarError as exc:
        raise BundleRejected(f"The bundle is not a tar archive: {exc}") from None
    with archive:
        try:
            members = check_members(archive, limits)
        except tarfile.TarError as exc:
            raise BundleRejected(f"The bundle is damaged: {exc}") from None
        root = os.path.realpath(destination)
        os.makedirs(root)
        written = 0
        for member in members:
            target = os.path.realpath(os.path.join(root, member.name))
            if target == root and member.isdir():
                continue
            if not target.startswith(root + os.sep):
                raise BundleRejected(f"{member.name!r} would be written outside its folder.")
            try:
                written += _write_member(archive, member, target, limits.max_bytes - written)
            except (FileExistsError, NotADirectoryError):
                raise BundleRejected(f"{member.name!r} comes twice, or inside a file's name.") from None


def _write_member(archive: tarfile.TarFile, member: tarfile.TarInfo, target: str, room: int) -> int:
    """Write one checked member; the bytes written (past `room`: BundleRejected)."""
    if member.isdir():
        os.makedirs(target, exist_ok=True)
        return 0
    os.makedirs(os.path.dirname(target), exist_ok=True)
    written = 0
    # "x": a name that comes twice, or a folder's name reused as a file's, is refused.
    with archive.extractfile(member) as source, open(target, "xb") as out:
        while chunk := source.read(1 << 20):
            written += len(chunk)  # what is really written: a header's size can lie
            if written > room:
                raise BundleRejected("The bundle unpacks past INFER_UPLOAD_MAX_UNCOMPRESSED_BYTES.")
            out.write(chunk)
    return written


def store(storage, key: str, folder: str, limits: BundleLimits, leave_out: tuple[str, ...] = ()) -> None:
    """Put the folder in the bucket under `key`, replacing what is there."""
    handle, tar_path = tempfile.mkstemp(prefix=".bundle-", suffix=".tar", dir=os.path.dirname(folder))
    os.close(handle)
    try:
        pack(folder, tar_path, limits, leave_out)
        with storage_errors(f"storing {key}"):
            storage.put_file(key, tar_path)
    finally:
        os.remove(tar_path)


def fetch(storage, key: str, target: str, limits: BundleLimits) -> bool:
    """Put the bundle under `key` at `target`, replacing what is there; False when
    the bucket has none. The caller holds the folder's lock."""
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    prefix = f".fetch-{os.path.basename(target)}-"
    for leftover in glob.glob(os.path.join(glob.escape(parent), prefix + "*")):  # a process killed mid-fetch
        shutil.rmtree(leftover, ignore_errors=True)
    work = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        tar_path = os.path.join(work, "bundle.tar")
        try:
            with storage_errors(f"fetching {key}"):
                if not storage.download(key, tar_path, limits.max_object_bytes, "The bundle"):
                    return False
        except UploadTooLarge as exc:
            raise BundleRejected(str(exc)) from None
        unpacked = os.path.join(work, "folder")
        unpack(tar_path, unpacked, limits)
        if os.path.lexists(target):  # what was there (an empty folder, a stale copy) goes
            os.rename(target, os.path.join(work, "replaced"))
        os.rename(unpacked, target)
        return True
    finally:
        shutil.rmtree(work, ignore_errors=True)


def delete(storage, key: str) -> None:
    with storage_errors(f"deleting {key}"):
        storage.delete_key(key)
