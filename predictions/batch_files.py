"""A batch's files and lines: where its input and output live, what one input
line asks for, and the output line that answers it.

The input is a JSONL file of requests in OpenAI's Batch API shape, one a line:

    {"custom_id": "a1", "method": "POST", "url": "/text-vectorisation", "body": {...}}

A line that cannot be run (not JSON, no custom_id, a method other than POST, a
body that is not an object) is answered by an output line with an `error`,
as is one the route refuses (an unknown URL, an invalid body, a missing model):
one bad line never fails the batch. Blank lines are skipped, as JSONL readers do.

The output holds one line per input line, in the input's order:

    {"id": "<batch id>-<n>", "custom_id": "a1", "response": {"status_code": 200, "body": {...}}, "error": null}

Both live under the data dir (batches/<batch id>/): on the disk shared by the
processes of one machine.
"""

import json
import os
from dataclasses import dataclass

INPUT_FILE, OUTPUT_FILE = "input.jsonl", "output.jsonl"

# Error codes of a line, by the status its route answered (OpenAI's names where it has one).
CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 408: "timeout",
         413: "too_large", 422: "invalid_body", 429: "rate_limited", 503: "unavailable"}


def batch_dir(data_dir: str, batch_id: str) -> str:
    return os.path.join(data_dir, "batches", batch_id)


def input_path(data_dir: str, batch_id: str) -> str:
    return os.path.join(batch_dir(data_dir, batch_id), INPUT_FILE)


def output_path(data_dir: str, batch_id: str) -> str:
    return os.path.join(batch_dir(data_dir, batch_id), OUTPUT_FILE)


@dataclass(frozen=True)
class Line:
    """One input line: the request it asks for, or why it cannot be run."""

    custom_id: str | None
    url: str = ""
    body: dict | None = None
    error: str = ""  # why the line cannot be run; empty when it can


def parse_line(text: str) -> Line:
    try:
        request = json.loads(text)
    except ValueError as exc:
        return Line(None, error=f"the line is not JSON ({exc})")
    except RecursionError:  # the stdlib parser recurses once per level: '[' * 100000
        return Line(None, error="the line is not JSON (nested too deeply)")
    if not isinstance(request, dict):
        return Line(None, error="the line is not a JSON object")
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return Line(None, error="custom_id: send a non-empty string that names the request in the output")
    if str(request.get("method", "POST")).upper() != "POST":
        return Line(custom_id, error="method: only POST")
    url, body = request.get("url"), request.get("body")
    if not isinstance(url, str) or not url.startswith("/"):
        return Line(custom_id, error="url: send the path of a task endpoint, such as /text-classification")
    if not isinstance(body, dict):
        return Line(custom_id, error="body: send the endpoint's JSON object")
    return Line(custom_id, url.split("?")[0], body)


def request_lines(path: str):
    """The input's non-blank lines, as text, in order."""
    with open(path, encoding="utf-8", errors="replace") as stream:
        for raw in stream:
            if raw.strip():
                yield raw


def count_lines(data: bytes) -> int:
    return sum(1 for raw in data.splitlines() if raw.strip())


def answer_line(batch_id: str, number: int, line: Line, status: int | None, answer) -> tuple[str, bool]:
    """(the output line, whether it is an error) for input line `number` (from 1):
    `status` and `answer` are the route's, None when the line was not run."""
    response = None if status is None else {"status_code": status, "body": answer}
    error = None
    if status is None:
        error = {"code": "invalid_line", "message": line.error}
    elif status >= 400:
        error = {"code": CODES.get(status, "server_error"), "message": _message(answer)}
    record = {"id": f"{batch_id}-{number}", "custom_id": line.custom_id, "response": response, "error": error}
    # ASCII: a lone surrogate a line sent ("\\ud800") is written escaped, never a bytes error.
    return json.dumps(record, separators=(",", ":")) + "\n", error is not None


def _message(answer) -> str:
    """The error's message, from our error shape or OpenAI's (on /v1)."""
    if isinstance(answer, dict):
        inner = answer.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if answer.get("message"):
            return str(answer["message"])
    return "the request failed"
