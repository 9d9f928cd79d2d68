"""A dataset's revisions: each edit writes a new folder of parsed rows.

Revision 1 is the parse of the upload; an edit (add samples, remove samples by
id or uid, remove a class) copies the rows of the revision it starts from into
a new folder, leaving out what it removes and adding what it adds, so every
revision stays readable and trainable as it was. An image dataset's images are
hard links to the earlier revision's files (no copy on disk; the quota counts
them as copies, which errs on the safe side).

Every row has a stable id: a row of the upload is "s<its position>" (its
position in revision 1, which never changes), an added one gets a random id;
edited revisions store it in the row, with the caller's `uid`. read_rows()
leaves both out: training never sees them.
"""

import json
import os
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass, field

from .base import LABELLED_FORMATS, MAX_ROWS_SETTING, DatasetRejected
from .child import RESULT_FILE
from .image_zip import IMAGES_DIR, image_problem
from .samples import ID_KEYS, SampleRejected
from .statistics import ROWS_FILE, check_label_count, summary
from .text_formats import build_row

# Where added images go in a revision's folder: named by the sample's id, never by anything sent.
ADDED_IMAGES = f"{IMAGES_DIR}/added"
IMAGE_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff"}


class SamplesMissing(LookupError):
    """What an edit names to remove is not in the revision (nothing was changed)."""


@dataclass
class Edit:
    """One change to a revision: samples to add (rows checked by samples.py, and
    an image's bytes for each image sample) or ids, uids or a label to remove."""

    add: list[dict] = field(default_factory=list)
    images: list[bytes | None] = field(default_factory=list)
    remove_ids: frozenset = frozenset()
    remove_uids: frozenset = frozenset()
    remove_label: str | None = None

    def kind(self) -> str:
        return "add" if self.add else "remove-class" if self.remove_label is not None else "remove"


def new_sample_id() -> str:
    return f"smp_{secrets.token_hex(6)}"


def sample_rows(folder: str):
    """The rows of a revision's folder, each with its id (and uid, if it has one)."""
    with open(os.path.join(folder, ROWS_FILE), encoding="utf-8") as rows:
        position = 0
        for line in rows:
            if line.strip():
                position += 1
                row = json.loads(line)
                yield row if "id" in row else {"id": f"s{position}", **row}


def _matches(row: dict, edit: Edit) -> bool:
    return (row["id"] in edit.remove_ids or row.get("uid") in edit.remove_uids
            or (edit.remove_label is not None and str(row.get("label")) == edit.remove_label))


def _link_image(base_dir: str, work_dir: str, relative: str) -> None:
    """The earlier revision's image, hard-linked (copied where links fail) at the same place."""
    source = os.path.realpath(os.path.join(base_dir, relative))
    if not source.startswith(os.path.realpath(base_dir) + os.sep):
        raise DatasetRejected(f"The image {relative!r} is outside the dataset's folder.")
    target = os.path.join(work_dir, relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _save_image(work_dir: str, sample_id: str, data: bytes, number: int, max_pixels: int) -> tuple[str, tuple]:
    """An added image, written and checked as an upload's images are; (its path in the folder, its size)."""
    from PIL import Image

    folder = os.path.join(work_dir, ADDED_IMAGES)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, sample_id)
    with open(path, "wb") as out:
        out.write(data)
    problem, size = image_problem(path, max_pixels)
    if problem:
        raise SampleRejected(f"Sample {number}: the image is {problem}.")
    with Image.open(path) as image:
        extension = IMAGE_EXTENSIONS.get(image.format, "img")
    os.replace(path, f"{path}.{extension}")
    return f"{ADDED_IMAGES}/{sample_id}.{extension}", size


class _Tally:
    """The statistics of the revision's rows, gathered as they are written."""

    def __init__(self, dataset_format: str, base_stats: dict):
        self.format = dataset_format
        self.base_stats = base_stats
        self.rows = 0
        self.labels: Counter = Counter()
        self.lengths: list = []
        self.widths: list = []
        self.heights: list = []
        self.missing: Counter = Counter()
        self.label_values: list = []

    @property
    def numeric_label(self) -> bool:
        return self.format == "tabular" and self.base_stats.get("label_kind") == "numeric"

    @property
    def labelled(self) -> bool:
        return self.format in LABELLED_FORMATS or (self.format == "tabular" and not self.numeric_label)

    def add(self, row: dict, folder: str, size: tuple | None = None) -> None:
        self.rows += 1
        if self.labelled:
            self.labels[row["label"]] += 1
        if self.format == "image-folders":
            width, height = size or _image_size(os.path.join(folder, row["image"]))
            self.widths.append(width)
            self.heights.append(height)
        elif self.format == "tabular":
            for name, value in row["features"].items():
                self.missing[name] += value is None
            if self.numeric_label:
                self.label_values.append(row["label"])
        else:
            _, length = build_row(self.format, {key: value for key, value in row.items() if key not in ID_KEYS})
            self.lengths.append(length)

    def stats(self, max_label_count: int) -> dict:
        if self.rows == 0:
            raise SampleRejected("The edit would leave the dataset with no rows; delete the dataset instead.")
        if self.labelled:
            try:
                check_label_count(self.labels, max_label_count)
            except DatasetRejected as exc:
                raise SampleRejected(f"After this edit: {exc}") from None
        stats = {"format": self.format, "rows": self.rows, "empty_rows": 0, "empty_row_lines": [], "bad_rows": 0,
                 "bad_row_lines": [], "labels": dict(sorted(self.labels.items())) if self.labelled else None,
                 "input_lengths": ({"width": summary(self.widths), "height": summary(self.heights)} if self.widths
                                   else summary(self.lengths))}
        if self.format == "tabular":
            stats.update(label_column=self.base_stats.get("label_column"), label_kind=self.base_stats.get("label_kind"),
                         input_lengths=None,
                         columns=[{**column, "missing": self.missing[column["name"]]}
                                  for column in self.base_stats.get("columns") or []])
            if self.numeric_label:
                stats["label_values"] = summary(self.label_values)
        return stats


def _image_size(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:  # the header only: it was checked when it came in
        return image.size


def write_revision(base_dir: str, work_dir: str, dataset_format: str, base_stats: dict, edit: Edit, limits,
                   revision: int) -> dict:
    """The revision after `edit` of the revision in `base_dir`, written to `work_dir`
    (made here; its rows, images and a result file written last): its statistics,
    with the ids of the added samples under "added_ids". SampleRejected or
    SamplesMissing when the edit cannot be made (the caller removes work_dir)."""
    os.makedirs(work_dir)
    tally = _Tally(dataset_format, base_stats)
    seen_ids, seen_uids, removed = set(), set(), 0
    kept_labels = set()
    with open(os.path.join(work_dir, ROWS_FILE), "w", encoding="utf-8") as out:
        for row in sample_rows(base_dir):
            seen_ids.add(row["id"])
            if "uid" in row:
                seen_uids.add(row["uid"])
            if tally.labelled:
                kept_labels.add(str(row["label"]))
            if _matches(row, edit):
                removed += 1
                continue
            if dataset_format == "image-folders":
                _link_image(base_dir, work_dir, row["image"])
            tally.add(row, work_dir)
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        _check_removals(edit, seen_ids, seen_uids, kept_labels, tally.labelled)
        added_ids = []
        for number, (row, image) in enumerate(zip(edit.add, edit.images), 1):
            if row.get("uid") is not None and row["uid"] in seen_uids:
                raise SampleRejected(f"Sample {number}: uid {row['uid']!r} is already in the dataset; each sample's "
                                     "uid is its own (remove the old sample first, or choose another uid).")
            seen_uids.add(row.get("uid"))
            sample_id = new_sample_id()
            stored, size = {"id": sample_id, **row}, None
            if image is not None:
                stored["image"], size = _save_image(work_dir, sample_id, image, number, limits.max_image_pixels)
            tally.add(stored, work_dir, size)
            if tally.rows > limits.max_rows:
                raise SampleRejected(f"The dataset would have more than {limits.max_rows} rows, the limit "
                                     f"({MAX_ROWS_SETTING}).")
            out.write(json.dumps(stored, ensure_ascii=False) + "\n")
            added_ids.append(sample_id)
    stats = tally.stats(limits.max_label_count)
    with open(os.path.join(work_dir, RESULT_FILE), "w", encoding="utf-8") as mark:  # a complete revision
        json.dump({"status": "ready", "revision": revision, "format": dataset_format, "stats": stats}, mark)
    return {**stats, "added_ids": added_ids, "removed": removed}


def _check_removals(edit: Edit, ids: set, uids: set, labels: set, labelled: bool) -> None:
    missing = [f"id {value!r}" for value in sorted(edit.remove_ids - ids)]
    missing += [f"uid {value!r}" for value in sorted(edit.remove_uids - uids)]
    if edit.remove_label is not None:
        if not labelled:
            raise SampleRejected("This dataset has no classes to remove (its label is a value to predict).")
        if edit.remove_label not in labels:
            missing.append(f"class {edit.remove_label!r}")
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise SamplesMissing(f"Not in this dataset's latest revision: {shown}. Nothing was changed; "
                             "GET /datasets/{id}/samples lists the samples and their ids.")


def read_samples(folder: str, offset: int, limit: int) -> tuple[list[dict], int]:
    """(the rows from `offset`, at most `limit`, with their ids; how many rows the revision has)."""
    page, total = [], 0
    for row in sample_rows(folder):
        if offset <= total < offset + limit:
            page.append(row)
        total += 1
    return page, total
