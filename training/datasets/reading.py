"""Reading an uploaded file safely: what kind it is, its lines, its CSV records.

Nothing here reads a whole file into memory: lines are read one at a time,
each no longer than the line limit (readline with a size, so a 1 GB line
costs no more than the limit), checked to be UTF-8 text without NUL bytes.
"""

import csv
from contextlib import contextmanager

from .base import MAX_LINE_SETTING, DatasetRejected

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
BOM = b"\xef\xbb\xbf"
NUL = b"\x00"
WHITESPACE = b" \t\r\n"
SNIFF_CHUNK = 64 * 1024

KIND_NAMES = {"zip": "a zip archive", "jsonl": "JSON Lines", "csv": "CSV"}


def sniff(path: str) -> str:
    """'zip', 'jsonl' (the first character that is not blank is "{") or 'csv'."""
    with open(path, "rb") as source:
        start = source.read(4)
        if start[:4] in ZIP_MAGICS:
            return "zip"
        source.seek(len(BOM) if start[:3] == BOM else 0)
        while chunk := source.read(SNIFF_CHUNK):
            stripped = chunk.lstrip(WHITESPACE)
            if stripped:
                first = stripped[:1]
                if first == b"[":
                    raise DatasetRejected("The file looks like one JSON array; send JSON Lines instead: one JSON "
                                          "object per line, with no [ ] around them and no commas between lines.")
                return "jsonl" if first == b"{" else "csv"
    raise DatasetRejected("The dataset is empty (or only blank lines): send its rows.")


def text_lines(path: str, max_line_bytes: int):
    """(line number, text of the line with its line ending) for each line of a UTF-8 file."""
    with open(path, "rb") as source:
        offset, number = 0, 0
        while raw := source.readline(max_line_bytes + 3):  # + 3: room for the line ending, and one byte over
            number += 1
            content = raw.rstrip(b"\r\n")
            if len(content) > max_line_bytes:
                raise DatasetRejected(
                    f"Line {number} is longer than {max_line_bytes} bytes, the limit ({MAX_LINE_SETTING}). "
                    "Shorten it, or split the text over several rows.")
            start = len(BOM) if number == 1 and raw.startswith(BOM) else 0
            try:
                text = raw[start:].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetRejected(
                    f"The file is not UTF-8 text: the bytes at offset {offset + start + exc.start} (line {number}) "
                    "are not UTF-8. Save the file as UTF-8 (CSV UTF-8 in a spreadsheet).") from None
            if "\x00" in text:
                at = offset + raw.index(NUL)
                raise DatasetRejected(f"The file holds binary data: a NUL byte at offset {at} (line {number}). "
                                      "Send a text file (CSV or JSON Lines), or a zip of images.")
            yield number, text
            offset += len(raw)


@contextmanager
def field_size_limit(limit: int):
    """csv's field limit (process-wide) set to the line limit while a file is read:
    a field may span several lines, but cannot grow past what one line may hold."""
    previous = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


class MalformedRecord:
    """A record csv could not read (a stray quote); the reader carries on after it."""

    def __init__(self, reason: str):
        self.reason = reason


def complete_records(records, width: int, collector):
    """The records after a CSV header that have all `width` fields; the others go
    to the collector (malformed or with another field count: bad; all empty: empty)."""
    for line, fields in records:
        if isinstance(fields, MalformedRecord):
            collector.bad(line, fields.reason)
        elif not any(field.strip() for field in fields):
            collector.empty(line)
        elif len(fields) != width:
            collector.bad(line, f"{len(fields)} fields where the header has {width}")
        else:
            yield line, fields


def delimiter_for(path: str, max_line_bytes: int) -> str:
    """A comma, unless the first line has no comma but tabs (TSV) or semicolons."""
    for _, line in text_lines(path, max_line_bytes):
        if line.strip():
            if "," not in line and "\t" in line:
                return "\t"
            if "," not in line and ";" in line:
                return ";"
            return ","
    return ","


def csv_records(path: str, max_line_bytes: int, delimiter: str = ","):
    """(first line of the record, its fields or a MalformedRecord), for every record,
    blank lines included (as an empty list). Call inside field_size_limit()."""
    lines = (text for _, text in text_lines(path, max_line_bytes))
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    consumed = 0
    while True:
        start = consumed + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            message = str(exc)
            if "field larger than field limit" in message:
                raise DatasetRejected(
                    f"From line {start}, a field runs past {max_line_bytes} bytes, the limit "
                    f"({MAX_LINE_SETTING}): a quote that is never closed, or a field that is too long.") from None
            if "unexpected end of data" in message:
                raise DatasetRejected(f"Line {start}: a quoted field opened here is never closed (unbalanced quotes). "
                                      "Close the quote, or double the quotes inside a quoted field (\"\").") from None
            consumed = reader.line_num
            yield start, MalformedRecord(f"malformed CSV: {message}")
            continue
        consumed = reader.line_num
        yield start, fields
