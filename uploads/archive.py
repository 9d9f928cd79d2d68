"""Check an uploaded zip before anything is extracted, then extract it member by member.

Refused: archives over the size limit, too many members, too much uncompressed
data or too high a compression ratio (zip bombs), absolute paths, `..`, links
and anything that is not a plain file or folder. Extraction writes each member
itself (never extractall) and checks again that the target stays inside the
destination folder.
"""

import os
import shutil
import stat
import zipfile
from dataclasses import dataclass


class ArchiveRejected(Exception):
    pass


@dataclass(frozen=True)
class ArchiveLimits:
    max_archive_bytes: int
    max_members: int
    max_uncompressed_bytes: int
    max_ratio: int


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return f"path leaving the archive {name!r}"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip tool recorded no Unix type
    if kind == stat.S_IFLNK:
        return f"symbolic link {name!r}"
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        return f"special file {name!r}"
    return None


def check_archive(path: str, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    size = os.path.getsize(path)
    if size > limits.max_archive_bytes:
        raise ArchiveRejected(f"The archive is {size} bytes; the limit is {limits.max_archive_bytes} (INFER_UPLOAD_MAX_BYTES).")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ArchiveRejected("The upload is not a zip archive.") from None
    with archive:
        members = archive.infolist()
    if len(members) > limits.max_members:
        raise ArchiveRejected(f"The archive has {len(members)} members; the limit is {limits.max_members} (INFER_UPLOAD_MAX_MEMBERS).")
    total = 0
    for info in members:
        problem = _member_problem(info)
        if problem:
            raise ArchiveRejected(f"The archive holds a {problem}; only plain files inside the archive are allowed.")
        total += info.file_size
        if info.compress_size and info.file_size / info.compress_size > limits.max_ratio and info.file_size > 1_000_000:
            raise ArchiveRejected(
                f"{info.filename!r} expands {info.file_size // info.compress_size}x; the limit is "
                f"{limits.max_ratio}x (INFER_UPLOAD_MAX_RATIO): this looks like a zip bomb."
            )
    if total > limits.max_uncompressed_bytes:
        raise ArchiveRejected(
            f"The archive expands to {total} bytes; the limit is {limits.max_uncompressed_bytes} (INFER_UPLOAD_MAX_UNCOMPRESSED_BYTES)."
        )
    return members


def extract_archive(path: str, destination: str, limits: ArchiveLimits) -> None:
    """Check, then extract into `destination` (which must not exist yet)."""
    members = check_archive(path, limits)
    root = os.path.realpath(destination)
    os.makedirs(root)
    written = 0
    with zipfile.ZipFile(path) as archive:
        for info in members:
            target = os.path.realpath(os.path.join(root, info.filename))
            if target != root and not target.startswith(root + os.sep):
                raise ArchiveRejected(f"{info.filename!r} would be written outside the model's folder.")
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as out:
                # Count what is really written: the sizes in the header can lie.
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > limits.max_uncompressed_bytes:
                        raise ArchiveRejected("The archive expands past INFER_UPLOAD_MAX_UNCOMPRESSED_BYTES.")
                    out.write(chunk)


def model_root(folder: str) -> str:
    """The folder holding config.json: the archive's root, or its single top folder."""
    if os.path.isfile(os.path.join(folder, "config.json")):
        return folder
    entries = [e for e in os.listdir(folder) if not e.startswith(("__MACOSX", "."))]
    if len(entries) == 1 and os.path.isdir(os.path.join(folder, entries[0])):
        return os.path.join(folder, entries[0])
    return folder


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
