"""The text formats (text-label, pairs, triplets, scored pairs, prompt-completion,
chat) from CSV records or JSON lines, one normalised row at a time.

A row whose fields are all empty (a blank line, ",,", {}) is an empty row; a
row that cannot be used (a missing label, a score out of range, a line that is
not JSON) is a bad row with its reason. Neither stops the parse: the
collector counts them and decides at the end whether enough rows were good.
"""

import json
import math

from .reading import complete_records, text_lines

CHAT_ROLES = ("system", "user", "assistant")
# Lines read, from the top of a JSON Lines file, for one object to detect the format by.
DETECTION_LINES = 1000


class BadRow(Exception):
    pass


EMPTY = object()


def _is_empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value in ([], {})


def _text(values: dict, field: str) -> str:
    value = values.get(field)
    if _is_empty(value):
        raise BadRow(f"empty {field}")
    if not isinstance(value, str):
        raise BadRow(f"{field} is a {type(value).__name__}, not text")
    return value


def _label(value) -> str:
    if _is_empty(value):
        raise BadRow("no label")
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise BadRow(f"the label is a {type(value).__name__}, not text or a number")
    return value.strip()


def _score(value) -> float:
    if _is_empty(value):
        raise BadRow("no score")
    if isinstance(value, bool):
        raise BadRow("the score is true/false, not a number")
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise BadRow(f"the score {value!r} is not a number") from None
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        raise BadRow(f"the score {value!r} is not between 0 and 1 (scale the scores to 0..1)")
    return score


def _messages(value) -> list[dict]:
    if not isinstance(value, list):
        raise BadRow("messages is not a list of {role, content} objects")
    messages = []
    for number, message in enumerate(value, 1):
        if not isinstance(message, dict):
            raise BadRow(f"message {number} is not a {{role, content}} object")
        role, content = message.get("role"), message.get("content")
        if role not in CHAT_ROLES:
            raise BadRow(f"message {number}: role {role!r} is not one of {', '.join(CHAT_ROLES)}")
        if not isinstance(content, str):
            raise BadRow(f"message {number}: content is not text")
        messages.append({"role": role, "content": content})
    if not any(message["role"] == "assistant" and message["content"].strip() for message in messages):
        raise BadRow("no assistant message with content to learn from")
    return messages


def build_row(dataset_format: str, values: dict) -> tuple[dict, int] | object:
    """(the normalised row, its input length in characters), or EMPTY; BadRow says why not."""
    if all(_is_empty(value) for value in values.values()):
        return EMPTY
    if dataset_format == "text-label":
        text = _text(values, "text")
        return {"text": text, "label": _label(values["label"])}, len(text)
    if dataset_format in ("text-pairs", "text-triplets"):
        fields = ("anchor", "positive", "negative") if dataset_format == "text-triplets" else ("anchor", "positive")
        row = {field: _text(values, field) for field in fields}
        return row, len(row["anchor"])
    if dataset_format == "scored-pairs":
        row = {"sentence1": _text(values, "sentence1"), "sentence2": _text(values, "sentence2"),
               "score": _score(values["score"])}
        return row, len(row["sentence1"])
    if dataset_format == "prompt-completion":
        row = {"prompt": _text(values, "prompt"), "completion": _text(values, "completion")}
        return row, len(row["prompt"]) + len(row["completion"])
    if dataset_format == "chat":
        messages = _messages(values["messages"])
        return {"messages": messages}, sum(len(message["content"]) for message in messages)
    raise ValueError(f"not a text format: {dataset_format}")


def _add(collector, dataset_format: str, line: int, values: dict) -> None:
    try:
        built = build_row(dataset_format, values)
    except BadRow as exc:
        collector.bad(line, str(exc))
        return
    if built is EMPTY:
        collector.empty(line)
    else:
        row, length = built
        collector.good(row, length=length)


def csv_rows(records, header: list[str], mapping: dict, dataset_format: str, collector) -> None:
    """The records after the header -> the collector."""
    index = {field: header.index(column) for field, column in mapping.items()}
    for line, fields in complete_records(records, len(header), collector):
        _add(collector, dataset_format, line, {field: fields[at] for field, at in index.items()})


def _parsed(text: str):
    """(object, None), or (None, why this line is bad)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno})"
    except ValueError:  # a number too long to convert
        return None, "not valid JSON"
    except RecursionError:  # "[[[[..." nested past the interpreter's limit
        return None, "JSON nested too deeply"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__}, not an object"
    return value, None


def first_object_keys(path: str, max_line_bytes: int) -> list[str]:
    """The keys of the first JSON line that holds an object (what the format is detected by)."""
    for number, text in text_lines(path, max_line_bytes):
        if number > DETECTION_LINES:
            break
        if text.strip():
            value, _ = _parsed(text)
            if value is not None:
                return list(value)
    return []


def jsonl_rows(path: str, max_line_bytes: int, mapping: dict, dataset_format: str, collector) -> None:
    for line, text in text_lines(path, max_line_bytes):
        if not text.strip():
            collector.empty(line)
            continue
        value, problem = _parsed(text)
        if problem:
            collector.bad(line, problem)
        else:
            _add(collector, dataset_format, line, {field: value.get(key) for field, key in mapping.items()})
