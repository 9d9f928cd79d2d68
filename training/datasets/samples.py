"""Samples sent to add to a dataset, checked as an upload's rows are.

An edit (POST /datasets/{id}/samples) sends rows as JSON, each in the dataset's
format: the fields an upload's row has (text and label; anchor and positive;
features and label...), an optional `uid` of the caller's, and for an image
dataset the image as base64 (`image`) or a URL (`image_url`, fetched by the
caller of this module before it comes here). What an upload would skip as a
bad row refuses the whole edit here, naming the sample: the caller is there to
fix it, and a silently shorter edit would be a surprise.
"""

import json
import math

from .base import DatasetRejected
from .tabular import MISSING
from .text_formats import EMPTY, BadRow, build_row

# The fields of a sample of each format (besides "uid"; images besides "image" / "image_url").
SAMPLE_FIELDS = {
    "text-label": ("text", "label"),
    "text-pairs": ("anchor", "positive"),
    "text-triplets": ("anchor", "positive", "negative"),
    "scored-pairs": ("sentence1", "sentence2", "score"),
    "prompt-completion": ("prompt", "completion"),
    "chat": ("messages",),
    "image-folders": ("label",),
    "tabular": ("features", "label"),
}
IMAGE_FIELDS = ("image", "image_url")
# A caller's id of a sample: text, like the ids it keeps on its side.
MAX_UID_CHARS = 200
# Keys of a stored row that are bookkeeping, not data: training never sees them.
ID_KEYS = ("id", "uid")


class SampleRejected(DatasetRejected):
    """A sample cannot be added: the message names it and says what to fix."""


def sample_keys(dataset_format: str) -> tuple[str, ...]:
    fields = SAMPLE_FIELDS[dataset_format] + ("uid",)
    return fields + IMAGE_FIELDS if dataset_format == "image-folders" else fields


def check_uid(uid, where: str) -> str | None:
    if uid is None:
        return None
    if not isinstance(uid, str) or not uid.strip() or len(uid) > MAX_UID_CHARS:
        raise SampleRejected(f"{where}: uid must be text of 1 to {MAX_UID_CHARS} characters.")
    return uid


def checked_sample(dataset_format: str, sample, number: int, stats: dict, max_line_bytes: int) -> tuple[dict, int | None]:
    """(the row to store, without id or image, and its input length) of sample `number`
    (1-based, for the messages); SampleRejected says what is wrong with it."""
    where = f"Sample {number}"
    if not isinstance(sample, dict):
        raise SampleRejected(f"{where} is not an object of the dataset's fields ({', '.join(SAMPLE_FIELDS[dataset_format])}).")
    unknown = sorted(set(sample) - set(sample_keys(dataset_format)))
    if unknown:
        raise SampleRejected(f"{where} has fields a {dataset_format} sample does not: {', '.join(unknown)}; its fields "
                             f"are {', '.join(sample_keys(dataset_format))}.")
    values = {field: sample.get(field) for field in SAMPLE_FIELDS[dataset_format]}
    try:
        if dataset_format == "image-folders":
            row, length = {"label": _image_label(values["label"])}, None
        elif dataset_format == "tabular":
            row, length = _tabular_row(values, stats), None
        else:
            built = build_row(dataset_format, values)
            if built is EMPTY:
                raise BadRow("every field is empty")
            row, length = built
    except BadRow as exc:
        raise SampleRejected(f"{where}: {exc}.") from None
    uid = check_uid(sample.get("uid"), where)
    if uid is not None:
        row["uid"] = uid
    size = len(json.dumps(row, ensure_ascii=False).encode("utf-8"))
    if size > max_line_bytes:
        raise SampleRejected(f"{where} is {size} bytes as a row; the limit is {max_line_bytes} "
                             "(INFER_DATASET_MAX_LINE_BYTES). Shorten it.")
    return row, length


def _image_label(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRow("no label (the class of the image, as text)")
    return value.strip()


def _tabular_row(values: dict, stats: dict) -> dict:
    """A row of the dataset's columns: numbers in numeric columns, null (or left out) for a missing value."""
    columns = {column["name"]: column["kind"] for column in stats.get("columns") or []}
    features = values["features"]
    if not isinstance(features, dict):
        raise BadRow(f"features must be an object of the columns ({', '.join(columns)})")
    unknown = sorted(set(features) - set(columns))
    if unknown:
        raise BadRow(f"features has columns the dataset does not: {', '.join(unknown)}")
    row = {}
    for name, kind in columns.items():
        value = features.get(name)
        if value is None or (isinstance(value, str) and value.strip().lower() in MISSING):
            row[name] = None
        elif kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise BadRow(f"column {name!r} is numeric: {value!r} is not a number")
            row[name] = float(value)
        else:
            row[name] = value if isinstance(value, str) else json.dumps(value)
    label = values["label"]
    if label is None or (isinstance(label, str) and label.strip().lower() in MISSING):
        raise BadRow("no label")
    if stats.get("label_kind") == "numeric":
        if isinstance(label, bool) or not isinstance(label, (int, float)) or not math.isfinite(label):
            raise BadRow(f"the label {label!r} is not a number (this dataset predicts a value)")
        label = float(label)
    else:
        label = label.strip() if isinstance(label, str) else json.dumps(label)
    return {"features": row, "label": label}
