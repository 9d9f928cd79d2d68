"""Check an uploaded zip before anything is extracted, then extract it member by member.

Refused: archives over the size limit, too many members, too much uncompressed
data or too high a compression ratio (zip bombs: one member, or the whole
archive), absolute paths, `..`, links and anything that is not a plain file or
folder. The members are counted from the raw central directory before zipfile
parses it, so a zip of a million entries costs no more than the limit's worth.
Extraction writes each member itself (never extractall) and checks again that
the target stays inside the destination folder.
"""

import os
import shutil
import stat
import struct
import zipfile
from dataclasses import dataclass

# Below this many bytes, expanding is harmless whatever the ratio: a small JSON
# file or a tiny archive compresses far better than model weights.
RATIO_FLOOR_BYTES = 1_000_000

# Zip records (APPNOTE.TXT 4.3): signatures and fixed sizes.
# signature, 2 disk numbers, entries on this disk, entries, CD size, CD offset, comment length
END_RECORD = struct.Struct("<4s4H2LH")
END_SIGNATURE = b"PK\x05\x06"
MAX_COMMENT = 0xFFFF
ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk, zip64 end record offset, disks
ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
# signature, size, 2 versions, 2 disk numbers, entries on this disk, entries, CD size, CD offset
ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
ZIP64_END_SIGNATURE = b"PK\x06\x06"
DIRECTORY_ENTRY = struct.Struct("<4s6H3L5H2L")  # 46 bytes; name, extra and comment lengths at 10, 11, 12
DIRECTORY_ENTRY_SIGNATURE = b"PK\x01\x02"


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


def _too_many_members(count: str, limit: int) -> ArchiveRejected:
    return ArchiveRejected(
        f"The archive has {count} members; the limit is {limit} (INFER_UPLOAD_MAX_MEMBERS). "
        "Leave out what the model does not need, or pack many small files into one."
    )


def _malformed(why: str) -> ArchiveRejected:
    return ArchiveRejected(f"The upload is not a valid zip archive: {why}. Create it again with a standard zip tool.")


def _directory_location(archive, size: int) -> tuple[int, int, int] | None:
    """(central directory start, its size, the entries it claims), found as zipfile
    finds them (the end record, then a ZIP64 end record just before it); None when
    there is no end record at all."""
    tail_start = max(0, size - END_RECORD.size - MAX_COMMENT)
    archive.seek(tail_start)
    tail = archive.read()
    at = len(tail) - END_RECORD.size  # the usual case: no archive comment
    if at < 0 or tail[at : at + 4] != END_SIGNATURE:
        at = tail.rfind(END_SIGNATURE)
        if at < 0 or at + END_RECORD.size > len(tail):
            return None
    _sig, _disk, _cd_disk, _on_disk, entries, cd_size, _cd_offset, _comment = END_RECORD.unpack_from(tail, at)
    end = tail_start + at
    locator_at = end - ZIP64_LOCATOR.size
    if locator_at >= 0:
        archive.seek(locator_at)
        locator = archive.read(ZIP64_LOCATOR.size)
        zip64_at = locator_at - ZIP64_END_RECORD.size
        if locator[:4] == ZIP64_LOCATOR_SIGNATURE and zip64_at >= 0:
            archive.seek(zip64_at)
            record = archive.read(ZIP64_END_RECORD.size)
            if record[:4] == ZIP64_END_SIGNATURE:
                entries, cd_size = ZIP64_END_RECORD.unpack(record)[7:9]
                end = zip64_at
    # Measured back from the end record, as zipfile does: data before the zip
    # (a self-extracting stub) shifts the stored offset but not this.
    start = end - cd_size
    if start < 0:
        raise _malformed(f"its central directory claims {cd_size} bytes, more than the file holds")
    return start, cd_size, entries


def count_members(path: str, max_members: int) -> int:
    """Count the central directory's entries from the raw records, stopping past
    `max_members`, so that zipfile never parses an oversized directory."""
    with open(path, "rb") as archive:
        location = _directory_location(archive, os.path.getsize(path))
        if location is None:
            raise ArchiveRejected("The upload is not a zip archive.")
        start, cd_size, claimed = location
        if claimed > max_members:
            raise _too_many_members(str(claimed), max_members)
        # The claim may understate (old tools wrap the 16-bit count): walk the records.
        archive.seek(start)
        count, offset = 0, 0
        while offset < cd_size:
            header = archive.read(DIRECTORY_ENTRY.size)
            if len(header) < DIRECTORY_ENTRY.size or header[:4] != DIRECTORY_ENTRY_SIGNATURE:
                raise _malformed(f"central directory entry {count + 1} is damaged")
            fields = DIRECTORY_ENTRY.unpack(header)
            variable = fields[10] + fields[11] + fields[12]  # name, extra field and comment
            offset += DIRECTORY_ENTRY.size + variable
            if offset > cd_size:
                raise _malformed(f"central directory entry {count + 1} runs past the directory's end")
            count += 1
            if count > max_members:
                raise _too_many_members(f"more than {max_members}", max_members)
            archive.seek(variable, os.SEEK_CUR)
    return count


def check_archive(path: str, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    size = os.path.getsize(path)
    if size > limits.max_archive_bytes:
        raise ArchiveRejected(f"The archive is {size} bytes; the limit is {limits.max_archive_bytes} (INFER_UPLOAD_MAX_BYTES).")
    count_members(path, limits.max_members)
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ArchiveRejected("The upload is not a zip archive.") from None
    with archive:
        members = archive.infolist()
    if len(members) > limits.max_members:  # count_members and zipfile read the same records; a second guard
        raise _too_many_members(str(len(members)), limits.max_members)
    total = 0
    for info in members:
        problem = _member_problem(info)
        if problem:
            raise ArchiveRejected(f"The archive holds a {problem}; only plain files inside the archive are allowed.")
        total += info.file_size
        # One bomb member inside an archive of incompressible weights.
        if info.file_size > RATIO_FLOOR_BYTES and info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
            raise ArchiveRejected(
                f"{info.filename!r} expands {info.file_size // info.compress_size}x; the limit is "
                f"{limits.max_ratio}x (INFER_UPLOAD_MAX_RATIO): this looks like a zip bomb."
            )
    if total > limits.max_uncompressed_bytes:
        raise ArchiveRejected(
            f"The archive expands to {total} bytes; the limit is {limits.max_uncompressed_bytes} (INFER_UPLOAD_MAX_UNCOMPRESSED_BYTES)."
        )
    # Many members, each too small for the check above, that together expand as a bomb.
    if total > RATIO_FLOOR_BYTES and total / size > limits.max_ratio:
        raise ArchiveRejected(
            f"The archive expands {total // size}x ({size} bytes to {total}); the limit is "
            f"{limits.max_ratio}x (INFER_UPLOAD_MAX_RATIO): this looks like a zip bomb."
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


def tree_bytes(path: str) -> int:
    """Bytes of the files under `path` (links not followed)."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total
