"""Which format a CSV's columns (or a JSON line's keys) are in, and which of them
hold each field of that format's rows."""

from .base import DatasetRejected

TEXT_NAMES = ("text", "sentence", "content")
LABEL_NAMES = ("label", "labels", "class", "category", "target", "y")
TABULAR_LABEL_NAMES = ("label", "target", "class", "y")

# The fields of each text format's rows, in the order formats are tried when
# none is declared (triplets before pairs: a triplet's columns include a pair's).
FORMAT_FIELDS = {
    "chat": ("messages",),
    "text-triplets": ("anchor", "positive", "negative"),
    "text-pairs": ("anchor", "positive"),
    "scored-pairs": ("sentence1", "sentence2", "score"),
    "prompt-completion": ("prompt", "completion"),
    "text-label": ("text", "label"),
}
JSONL_ONLY = ("chat",)
# Fields that users name in many ways, and the option that names their column.
FIELD_NAMES = {"text": (TEXT_NAMES, "text_column"), "label": (LABEL_NAMES, "label_column")}


def _find(columns: list[str], name: str) -> str | None:
    """The column called `name`, ignoring case and surrounding blanks."""
    wanted = name.strip().lower()
    return next((column for column in columns if column.strip().lower() == wanted), None)


def _option_column(columns: list[str], options: dict, option: str, what: str) -> str | None:
    name = options.get(option)
    if not name:
        return None
    column = _find(columns, name)
    if column is None:
        raise DatasetRejected(f"{option} is {name!r}, but the {what} are: {', '.join(map(repr, columns))}. "
                              f"Set {option} to one of them.")
    return column


def _field_column(columns: list[str], options: dict, field: str, what: str) -> str | None:
    if field in FIELD_NAMES:
        names, option = FIELD_NAMES[field]
        chosen = _option_column(columns, options, option, what)
        if chosen is not None:
            return chosen
        return next((column for name in names if (column := _find(columns, name)) is not None), None)
    return _find(columns, field)


def field_columns(columns: list[str], dataset_format: str, options: dict, what: str) -> dict | None:
    """{field: column} for each field of the format, or None when one is missing."""
    found = {field: _field_column(columns, options, field, what) for field in FORMAT_FIELDS[dataset_format]}
    return None if None in found.values() else found


def _needed(dataset_format: str) -> str:
    parts = []
    for field in FORMAT_FIELDS[dataset_format]:
        if field in FIELD_NAMES:
            names, option = FIELD_NAMES[field]
            parts.append(f"{' or '.join(names)} (or name it with {option})")
        else:
            parts.append(field)
    return ", ".join(parts)


def detect(columns: list[str], options: dict, kind: str, declared: str | None) -> tuple[str, dict]:
    """(format, {field: column}); tabular answers no mapping (tabular_label_column says more).
    `kind` is 'csv' or 'jsonl'; DatasetRejected lists what was found and what is needed."""
    what = "columns" if kind == "csv" else "keys of the first JSON line"
    if declared == "tabular":
        return declared, {}
    if declared is not None:
        mapping = field_columns(columns, declared, options, what)
        if mapping is None:
            raise DatasetRejected(f"Format {declared} needs the {what.split(' ')[0]} {_needed(declared)}; the {what} "
                                  f"are: {', '.join(map(repr, columns)) or 'none'}.")
        return declared, mapping
    for candidate in FORMAT_FIELDS:
        if candidate in JSONL_ONLY and kind != "jsonl":
            continue
        mapping = field_columns(columns, candidate, options, what)
        if mapping is not None:
            return candidate, mapping
    if kind == "csv" and len(columns) >= 2:
        return "tabular", {}
    possible = [name for name in FORMAT_FIELDS if kind == "jsonl" or name not in JSONL_ONLY]
    formats = "; ".join(f"{name}: {_needed(name)}" for name in possible)
    found = ", ".join(map(repr, columns)) or "none"
    raise DatasetRejected(f"Could not tell the dataset's format from its {what}: {found}. Each format needs these: "
                          f"{formats}; a CSV of other columns (two at least) is tabular. Rename them, or declare "
                          "the format.")


def tabular_label_column(columns: list[str], options: dict) -> tuple[str, str]:
    """(the label's column, why that one): label_column, else a usual name, else the last column."""
    chosen = _option_column(columns, options, "label_column", "columns")
    if chosen is not None:
        return chosen, "the label_column option"
    named = next((column for name in TABULAR_LABEL_NAMES if (column := _find(columns, name)) is not None), None)
    if named is not None:
        return named, "its name"
    return columns[-1], "the last column; set label_column to choose another"
