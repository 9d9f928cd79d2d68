"""A zip of images in one folder per label -> images/<label>/<file> and a row per image.

The archive is checked first by uploads/archive.py (traversal, absolute
paths, links, bombs, too many members); then each member is written by hand
(never extractall), counted against the uncompressed limit as it is written,
and kept only when PIL opens it as one of the usual image formats within the
pixel limit, verifies it and decodes it. Anything else is a bad row named by
its member name.
"""

import os
import warnings
import zipfile
import zlib

from core.images import IMAGE_FORMATS
from uploads.archive import ArchiveRejected, check_archive

from .base import MAX_PIXELS_SETTING, DatasetRejected

# What zip tools and desktops add beside the images.
JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})
IMAGES_DIR = "images"
LAYOUT_HINT = ("Put the images in one folder per label: cat/1.png, cat/2.png, dog/1.png ... "
               "(the folders at the top of the zip, or inside one folder that holds them).")


def _parts(name: str) -> list[str]:
    return [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]


def _is_junk(parts: list[str]) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in parts) or parts[-1].lower() in JUNK_FILES


def image_problem(path: str, max_pixels: int) -> tuple[str | None, tuple[int, int] | None]:
    """(None, (width, height)) for an image PIL opens, verifies and decodes; else (why not, None)."""
    from PIL import Image

    not_an_image = f"not an image ({', '.join(IMAGE_FORMATS)}), or a damaged one"
    try:
        with warnings.catch_warnings():
            # PIL's own guard against decompression bombs, made an error instead of a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return (f"{width}x{height} is {width * height} pixels; the limit is {max_pixels} "
                            f"({MAX_PIXELS_SETTING})"), None
                image.verify()  # checksums and structure, without decoding
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                image.load()  # verify() misses damaged pixel data
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"too many pixels to decode; the limit is {max_pixels} ({MAX_PIXELS_SETTING})", None
    except MemoryError:
        raise  # the parse is out of memory: every later image would fail too, so it ends here
    except Exception:  # PIL raises many kinds for a file that is not a valid image
        return not_an_image, None
    return None, (width, height)


class _Budget:
    """Bytes really written, against the uncompressed limit (the headers' sizes can lie)."""

    def __init__(self, limit: int):
        self.limit, self.written = limit, 0

    def copy(self, source, out) -> None:
        while chunk := source.read(1 << 20):
            self.written += len(chunk)
            if self.written > self.limit:
                raise DatasetRejected("The archive expands past INFER_UPLOAD_MAX_UNCOMPRESSED_BYTES.")
            out.write(chunk)


def parse_image_zip(path: str, work_dir: str, limits, collector, say) -> None:
    try:
        members = check_archive(path, limits.archive)
    except ArchiveRejected as exc:
        raise DatasetRejected(str(exc)) from None
    files = [(info, _parts(info.filename)) for info in members if not info.is_dir()]
    files = [(info, parts) for info, parts in files if parts]
    junk = [info for info, parts in files if _is_junk(parts)]
    files = [(info, parts) for info, parts in files if not _is_junk(parts)]
    if junk:
        say(f"Ignored {len(junk)} hidden or system files (such as {junk[0].filename!r})")
    if not files:
        raise DatasetRejected(f"The zip holds no images. {LAYOUT_HINT}")
    tops = {parts[0] for _, parts in files}
    if len(tops) == 1 and all(len(parts) >= 3 for _, parts in files):
        files = [(info, parts[1:]) for info, parts in files]  # the folder the label folders were zipped in
    labels = sorted({parts[0] for _, parts in files if len(parts) == 2})
    if not labels:
        raise DatasetRejected(f"The images are not in label folders (such as {files[0][0].filename!r}). {LAYOUT_HINT}")
    say(f"Detected format image-folders: {len(labels)} label folders ({', '.join(labels[:10])}"
        f"{', ...' if len(labels) > 10 else ''})")
    root = os.path.realpath(os.path.join(work_dir, IMAGES_DIR))
    os.makedirs(root, exist_ok=True)
    budget = _Budget(limits.archive.max_uncompressed_bytes)
    with zipfile.ZipFile(path) as archive:
        for info, parts in files:
            if len(parts) != 2:
                collector.bad(info.filename, "not directly inside a label folder (<label>/<image>)")
                continue
            label, filename = parts
            target = os.path.realpath(os.path.join(root, label, filename))
            if not target.startswith(root + os.sep):  # archive.py refused "..": a second guard
                raise DatasetRejected(f"{info.filename!r} would be written outside the dataset's folder.")
            if os.path.exists(target):
                collector.bad(info.filename, "a second file of the same name in this folder")
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            try:
                with archive.open(info) as source, open(target, "wb") as out:
                    budget.copy(source, out)
            except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
                os.remove(target)  # encrypted, damaged, or compressed in a way zipfile cannot read
                collector.bad(info.filename, f"cannot be extracted ({exc})")
                continue
            problem, size = image_problem(target, limits.max_image_pixels)
            if problem:
                os.remove(target)
                collector.bad(info.filename, problem)
                continue
            collector.good({"image": f"{IMAGES_DIR}/{label}/{filename}", "label": label}, size=size)
