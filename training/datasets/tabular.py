"""Tabular CSVs: one label column, the others features, each numeric or categorical.

Two passes over the file (it is never held in memory): the first decides each
column's kind by what most of its values are, the second writes the rows,
turning a value that breaks its column's kind (a word in a numeric column)
into a bad row. A label column of numbers is a value to predict (regression),
unless it holds few whole numbers: codes of classes, as in 0/1/2.
"""

import math
from array import array

from .base import DatasetRejected
from .detection import tabular_label_column
from .reading import MalformedRecord, complete_records, csv_records
from .statistics import summary

MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
# Whole-number labels with at most this many distinct values are class codes.
MAX_CODED_CLASSES = 20


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def column_names(header: list[str]) -> list[str]:
    """The header's names, an unnamed column (a saved index) called column_N; duplicates refused."""
    names = [name.strip() or f"column_{number}" for number, name in enumerate(header, 1)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DatasetRejected(f"The CSV has more than one column called {', '.join(map(repr, duplicates))}; "
                              "give each column its own name.")
    return names


class _Tally:
    """What the first pass learns about one column."""

    def __init__(self, keep_distinct: int):
        self.numbers = self.words = self.missing = 0
        self.whole = True
        self.distinct: set = set()
        self.keep_distinct = keep_distinct

    def add(self, text: str) -> None:
        if text.lower() in MISSING:
            self.missing += 1
            return
        number = _number(text)
        if number is None:
            self.words += 1
        else:
            self.numbers += 1
            self.whole = self.whole and number.is_integer()
        if self.keep_distinct and len(self.distinct) <= self.keep_distinct:
            self.distinct.add(text)

    @property
    def numeric(self) -> bool:
        return self.numbers > self.words


def _records_after(path: str, limits, delimiter: str, header_line: int):
    for line, fields in csv_records(path, limits.max_line_bytes, delimiter):
        if line > header_line:
            yield line, fields


def _usable(fields, width: int) -> bool:
    return not isinstance(fields, MalformedRecord) and len(fields) == width and any(f.strip() for f in fields)


def parse_tabular(path: str, limits, delimiter: str, header: list[str], header_line: int, options: dict,
                  collector, say) -> dict:
    """Both passes; answers the tabular statistics beyond the collector's own."""
    names = column_names(header)
    label_column, why = tabular_label_column(names, options)
    features = [name for name in names if name != label_column]
    label_at = names.index(label_column)
    # Distinct values matter for the label only (how many classes): features keep none.
    tallies = [_Tally(max(limits.max_label_count, MAX_CODED_CLASSES) if at == label_at else 0)
               for at in range(len(names))]
    for _, fields in _records_after(path, limits, delimiter, header_line):
        if _usable(fields, len(names)):
            for tally, value in zip(tallies, fields):
                tally.add(value.strip())
    label_tally = tallies[label_at]
    coded = label_tally.whole and len(label_tally.distinct) <= MAX_CODED_CLASSES
    label_kind = "numeric" if label_tally.numeric and not coded else "categorical"
    kinds = {name: "numeric" if tally.numeric else "categorical" for name, tally in zip(names, tallies)}
    say(f"Label column {label_column!r} (by {why}), "
        f"{label_kind} ({_label_reason(label_tally, label_kind, coded)})")
    say("Features: " + ", ".join(f"{name} ({kinds[name]})" for name in features))
    if not features:
        raise DatasetRejected("A tabular dataset needs at least one column besides the label.")
    collector.count_labels = label_kind == "categorical"
    missing = dict.fromkeys(features, 0)
    label_values = array("d")
    for line, fields in complete_records(_records_after(path, limits, delimiter, header_line), len(names), collector):
        row, problem = _row(dict(zip(names, (field.strip() for field in fields))), features, kinds,
                            label_column, label_kind)
        if problem:
            collector.bad(line, problem)
            continue
        for name, value in row["features"].items():
            missing[name] += value is None
        if label_kind == "numeric":
            label_values.append(row["label"])
        collector.good(row)
    if label_kind == "numeric" and len(set(label_values)) < 2:
        raise DatasetRejected(f"The label column {label_column!r} holds one value only; there is nothing to learn. "
                              "Set label_column to the column to predict.")
    extra = {"columns": [{"name": name, "kind": kinds[name], "missing": missing[name]} for name in features],
             "label_column": label_column, "label_kind": label_kind, "input_lengths": None}
    if label_kind == "numeric":
        extra["label_values"] = summary(label_values)
    return extra


def _label_reason(tally: _Tally, kind: str, coded: bool) -> str:
    if kind == "numeric":
        return "numbers: a value to predict"
    if tally.numeric and coded:
        return f"whole numbers with {len(tally.distinct)} distinct values: class codes"
    return "names of classes"


def _row(values: dict, features: list[str], kinds: dict, label_column: str, label_kind: str):
    """(row, None) or (None, why the row is bad)."""
    label = values[label_column]
    if label.lower() in MISSING:
        return None, "no label"
    if label_kind == "numeric":
        label = _number(label)
        if label is None:
            return None, f"the label {values[label_column]!r} is not a number"
    row = {}
    for name in features:
        value = values[name]
        if value.lower() in MISSING:
            row[name] = None
        elif kinds[name] == "numeric":
            row[name] = _number(value)
            if row[name] is None:
                return None, f"column {name!r}: {value!r} is not a number"
        else:
            row[name] = value
    return {"features": row, "label": label}, None
