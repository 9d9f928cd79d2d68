"""parse_dataset: an uploaded file -> work_dir/rows.jsonl (+ images/), statistics
and a parse log. Runs in the dataset's child process (child.py), never in a web
worker: a hostile file meets a memory cap there.

What the file is comes from its first bytes (a zip, JSON Lines, else CSV); its
format from its columns or keys unless declared; what each row holds from the
format (text_formats.py, tabular.py, image_zip.py).
"""

import json
import os
import shutil

from .base import FORMAT_TASKS, LABELLED_FORMATS, DatasetRejected, format_list
from .detection import JSONL_ONLY, detect
from .image_zip import IMAGES_DIR, parse_image_zip
from .reading import KIND_NAMES, csv_records, delimiter_for, field_size_limit, sniff
from .samples import ID_KEYS
from .statistics import ROWS_FILE, RowCollector
from .tabular import parse_tabular
from .text_formats import csv_rows, first_object_keys, jsonl_rows

DELIMITER_NAMES = {",": "commas", "\t": "tabs", ";": "semicolons"}


def _check_kind(declared: str | None, kind: str) -> None:
    """A declared format the file's kind cannot hold fails before any row is read."""
    if declared is None:
        return
    needs = ("zip" if declared == "image-folders" else "csv" if declared == "tabular"
             else "jsonl" if declared in JSONL_ONLY else None)
    if (needs and kind != needs) or (needs is None and kind == "zip"):
        wanted = KIND_NAMES[needs] if needs else "CSV or JSON Lines"
        raise DatasetRejected(f"The format is declared as {declared}, which comes as {wanted}, but the file is "
                              f"{KIND_NAMES[kind]}. Send the right file, or leave the format out to detect it.")


def _used(mapping: dict) -> str:
    return ", ".join(column if column == field else f"{column} as {field}" for field, column in mapping.items())


def _count(number: int, what: str) -> str:
    return f"{number} {what}" if number == 1 else f"{number} {what}s"


def _summary_line(stats: dict) -> str:
    parts = [_count(stats["rows"], "row")]
    if stats.get("labels"):
        parts.append(_count(len(stats["labels"]), "label"))
    if stats["empty_rows"]:
        parts.append(_count(stats["empty_rows"], "empty row") + " skipped")
    if stats["bad_rows"]:
        parts.append(_count(stats["bad_rows"], "bad row") + " skipped")
    return "Ready: " + ", ".join(parts)


def _parse_csv(source_path, work_dir, declared, options, limits, say) -> dict:
    delimiter = delimiter_for(source_path, limits.max_line_bytes)
    if delimiter != ",":
        say(f"The header is separated by {DELIMITER_NAMES[delimiter]}, not commas: reading it so")
    with field_size_limit(limits.max_line_bytes):
        records = csv_records(source_path, limits.max_line_bytes, delimiter)
        header_line, header = next(((line, fields) for line, fields in records
                                    if isinstance(fields, list) and any(f.strip() for f in fields)), (None, None))
        if header is None:
            raise DatasetRejected("The CSV has no header line: its first line must name the columns.")
        columns = [name.strip() for name in header]
        dataset_format, mapping = detect(columns, options, "csv", declared)
        if dataset_format == "tabular":
            records.close()  # tabular reads the file twice, from the start
            say(f"{'Detected' if declared is None else 'Declared'} format tabular: {len(columns)} columns")
            with RowCollector(work_dir, limits, say, count_labels=False, limit_labels=False) as collector:
                extra = parse_tabular(source_path, limits, delimiter, header, header_line, options, collector, say)
                return collector.finish("tabular", labelled=collector.count_labels, extra=extra)
        say(f"{'Detected' if declared is None else 'Declared'} format {dataset_format}: columns {_used(mapping)}")
        with _collector(work_dir, limits, say, dataset_format) as collector:
            csv_rows(records, columns, mapping, dataset_format, collector)
            return collector.finish(dataset_format, labelled=dataset_format in LABELLED_FORMATS)


def _parse_jsonl(source_path, work_dir, declared, options, limits, say) -> dict:
    keys = first_object_keys(source_path, limits.max_line_bytes)
    if not keys:
        raise DatasetRejected("No line of the file's start is a JSON object with keys: each line must be one "
                              "object, such as {\"text\": \"...\", \"label\": \"...\"}.")
    dataset_format, mapping = detect(keys, options, "jsonl", declared)
    say(f"{'Detected' if declared is None else 'Declared'} format {dataset_format}: keys {_used(mapping)}")
    with _collector(work_dir, limits, say, dataset_format) as collector:
        jsonl_rows(source_path, limits.max_line_bytes, mapping, dataset_format, collector)
        return collector.finish(dataset_format, labelled=dataset_format in LABELLED_FORMATS)


def _parse_zip(source_path, work_dir, limits, say) -> dict:
    try:
        with _collector(work_dir, limits, say, "image-folders") as collector:
            parse_image_zip(source_path, work_dir, limits, collector, say)
            return collector.finish("image-folders", labelled=True)
    except BaseException:
        shutil.rmtree(os.path.join(work_dir, IMAGES_DIR), ignore_errors=True)
        raise


def _collector(work_dir, limits, say, dataset_format: str) -> RowCollector:
    labelled = dataset_format in LABELLED_FORMATS
    return RowCollector(work_dir, limits, say, count_labels=labelled, limit_labels=labelled)


def parse_dataset(source_path: str, work_dir: str, declared_format: str | None, options: dict, limits,
                  say) -> dict:
    """Parse, check and normalise the dataset at source_path into work_dir; answer its
    statistics. DatasetRejected (message: what to fix) when the dataset cannot be used."""
    if declared_format is not None and declared_format not in FORMAT_TASKS:
        raise DatasetRejected(f"Unknown format {declared_format!r}; the formats are: {format_list()}.")
    if os.path.getsize(source_path) == 0:
        raise DatasetRejected("The dataset is empty: send its rows.")
    kind = sniff(source_path)
    say(f"Reading {os.path.getsize(source_path)} bytes as {KIND_NAMES[kind]}")
    _check_kind(declared_format, kind)
    for leftover in (ROWS_FILE, IMAGES_DIR):  # an earlier parse's output is never mixed into this one's
        path = os.path.join(work_dir, leftover)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    if kind == "zip":
        stats = _parse_zip(source_path, work_dir, limits, say)
    elif kind == "jsonl":
        stats = _parse_jsonl(source_path, work_dir, declared_format, options, limits, say)
    else:
        stats = _parse_csv(source_path, work_dir, declared_format, options, limits, say)
    say(_summary_line(stats))
    return stats


def read_rows(work_dir: str) -> list[dict]:
    """The normalised rows a parse or an edit wrote (one dict per row, keys by
    format), without an edited revision's ids and uids: training never sees them."""
    with open(os.path.join(work_dir, ROWS_FILE), encoding="utf-8") as rows:
        parsed = (json.loads(line) for line in rows if line.strip())
        return [{key: value for key, value in row.items() if key not in ID_KEYS} for row in parsed]
