"""Collecting the rows a parser keeps, and the statistics about them.

A parser hands every row to one RowCollector: good rows are written to
rows.jsonl as they come (a large dataset never sits in memory as dicts), empty
and bad rows are counted with their line numbers, labels and input lengths are
tallied. finish() applies the whole-dataset rules (no good rows, mostly bad
rows, too few or too many labels) and answers the statistics.
"""

import json
import math
import os
from array import array
from collections import Counter

from .base import LISTED_LINES, MAX_LABELS_SETTING, MAX_ROWS_SETTING, DatasetRejected

# Labels are names (a model answers {label: p} with them): a longer "label" is
# text in the wrong column, and every label is kept in the statistics.
MAX_LABEL_CHARS = 200

ROWS_FILE = "rows.jsonl"
# Bad rows named in the parse log one by one; the rest are only counted there
# (the statistics list the first LISTED_LINES).
LOGGED_BAD_ROWS = 20


def summary(values) -> dict | None:
    """min, max, mean, median and 95th percentile (nearest rank) of some numbers."""
    if not len(values):
        return None
    ordered = sorted(values)
    count = len(ordered)

    def rank(fraction: float):
        # round(): 0.95 * 20 must be 19, not 19.000000000000004
        return ordered[max(0, math.ceil(round(fraction * count, 9)) - 1)]

    return {"min": ordered[0], "max": ordered[-1], "mean": round(sum(ordered) / count, 2),
            "p50": rank(0.5), "p95": rank(0.95)}


class RowCollector:
    def __init__(self, work_dir: str, limits, say, count_labels: bool, limit_labels: bool):
        self.limits = limits
        self.say = say
        self.count_labels = count_labels
        # Tabular labels may turn out to be numbers (many distinct values): they
        # are counted, but checked against the limit only once their kind is known.
        self.limit_labels = limit_labels
        self.final_path = os.path.join(work_dir, ROWS_FILE)
        self.partial_path = self.final_path + ".partial"
        self._out = open(self.partial_path, "w", encoding="utf-8")
        self.rows = 0
        self.empty_rows = 0
        self.empty_row_lines: list = []
        self.bad_rows = 0
        self.bad_row_lines: list = []
        self.labels: Counter = Counter()
        self.lengths = array("q")
        self.widths = array("q")
        self.heights = array("q")

    def _check_row_count(self) -> None:
        if self.rows + self.bad_rows > self.limits.max_rows:
            raise DatasetRejected(
                f"The dataset has more than {self.limits.max_rows} rows; the limit is {self.limits.max_rows} "
                f"({MAX_ROWS_SETTING}). Send a sample of it, or split it into several datasets.")

    def empty(self, line) -> None:
        self.empty_rows += 1
        if len(self.empty_row_lines) < LISTED_LINES:
            self.empty_row_lines.append(line)

    def bad(self, line, reason: str) -> None:
        self.bad_rows += 1
        self._check_row_count()
        if len(self.bad_row_lines) < LISTED_LINES:
            self.bad_row_lines.append({"line": line, "reason": reason})
        where = f"line {line}" if isinstance(line, int) else line
        if self.bad_rows <= LOGGED_BAD_ROWS:
            self.say(f"{where}: {reason}; skipped")
        elif self.bad_rows == LOGGED_BAD_ROWS + 1:
            self.say("More bad rows follow; the statistics list the first "
                     f"{LISTED_LINES} (bad_row_lines), the parse log only the first {LOGGED_BAD_ROWS}.")

    def good(self, row: dict, length: int | None = None, size: tuple[int, int] | None = None) -> None:
        self.rows += 1
        self._check_row_count()
        if self.count_labels:
            if len(str(row["label"])) > MAX_LABEL_CHARS:
                raise DatasetRejected(
                    f"A label is {len(str(row['label']))} characters long; labels are at most {MAX_LABEL_CHARS}. "
                    "Is the label column the right one?")
            self.labels[row["label"]] += 1
            if self.limit_labels and len(self.labels) > self.limits.max_label_count:
                raise DatasetRejected(
                    f"The dataset has more than {self.limits.max_label_count} distinct labels; the limit is "
                    f"{self.limits.max_label_count} ({MAX_LABELS_SETTING}). Is the label column the right one?")
        if length is not None:
            self.lengths.append(length)
        if size is not None:
            self.widths.append(size[0])
            self.heights.append(size[1])
        self._out.write(json.dumps(row, ensure_ascii=False) + "\n")

    def __enter__(self) -> "RowCollector":
        return self

    def __exit__(self, kind, error, trace) -> None:
        """A parse that failed leaves no half-written rows behind."""
        self._out.close()
        if os.path.exists(self.partial_path):
            os.remove(self.partial_path)

    def finish(self, dataset_format: str, labelled: bool, extra: dict | None = None) -> dict:
        """Apply the whole-dataset rules, publish rows.jsonl and answer the statistics."""
        self._out.close()
        if self.rows == 0:
            reasons = Counter(entry["reason"] for entry in self.bad_row_lines).most_common(3)
            because = f" Most common problems: {'; '.join(reason for reason, _ in reasons)}." if reasons else ""
            raise DatasetRejected(f"The dataset has no usable rows ({self.empty_rows} empty, {self.bad_rows} bad)."
                                  f"{because} Is this the right format ({dataset_format})?")
        if self.bad_rows > self.rows:
            raise DatasetRejected(
                f"{self.bad_rows} of {self.rows + self.bad_rows} rows are bad (bad_row_lines lists them); is this "
                f"the right format ({dataset_format})? Fix the rows, or declare the format the file is in.")
        if labelled:
            check_label_count(self.labels, self.limits.max_label_count)
        os.replace(self.partial_path, self.final_path)
        if self.widths:
            lengths = {"width": summary(self.widths), "height": summary(self.heights)}
        else:
            lengths = summary(self.lengths)
        stats = {
            "format": dataset_format, "rows": self.rows, "empty_rows": self.empty_rows,
            "empty_row_lines": self.empty_row_lines, "bad_rows": self.bad_rows, "bad_row_lines": self.bad_row_lines,
            "labels": dict(sorted(self.labels.items())) if labelled else None, "input_lengths": lengths,
        }
        stats.update(extra or {})
        return stats


def check_label_count(labels: Counter, max_label_count: int) -> None:
    if len(labels) < 2:
        only = f"only the label {next(iter(labels))!r}" if labels else "no labels"
        raise DatasetRejected(f"The dataset has {only}; a classifier needs examples of at least 2 labels. "
                              "Add rows of the other labels, or check that the label column is the right one.")
    if len(labels) > max_label_count:
        raise DatasetRejected(f"The dataset has {len(labels)} distinct labels; the limit is {max_label_count} "
                              f"({MAX_LABELS_SETTING}). Is the label column the right one?")
