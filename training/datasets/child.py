"""python -m training.datasets.child WORK_DIR: parse one dataset, in its own process.

Reads WORK_DIR/parse_request.json ({"source", "format", "options", "limits"}),
caps its own address space at limits.max_memory_mb (a hostile file cannot take
the host's memory: past the cap it fails here, not in the web workers), parses,
and writes WORK_DIR/parse_result.json ({"status": "ready" | "failed", "format",
"stats", "message", "log": [{"timestamp", "message"}]}) atomically. It exits 0
whether the dataset is ready or failed; only a crash (out of memory, killed)
leaves no result (a MemoryError: exit status OUT_OF_MEMORY), and the job runner
says so.
"""

import json
import os
import resource
import sys
import traceback
from datetime import datetime, timezone

from ..child_records import ParseOutcome, ParseRequest
from .base import DatasetLimits, DatasetRejected
from .parse import parse_dataset

REQUEST_FILE = "parse_request.json"
RESULT_FILE = "parse_result.json"
# Exit status of a parse that ran out of memory (past its cap): no result, and
# the runner says so.
OUT_OF_MEMORY = 3


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cap_memory(megabytes: int) -> None:
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # the hard limit too: the parse cannot lift it


def write_result(work_dir: str, result: dict) -> None:
    """Write then rename: the runner never reads half a result."""
    path = os.path.join(work_dir, RESULT_FILE)
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as out:
        json.dump(result, out, ensure_ascii=False)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)


def run(work_dir: str) -> ParseOutcome:
    with open(os.path.join(work_dir, REQUEST_FILE), encoding="utf-8") as source:
        request = ParseRequest.from_dict(json.load(source))
    cap_memory(int(request.limits["max_memory_mb"]))
    from ..child_priority import lower_priority

    lower_priority(request)  # requests served beside it come first
    log: list[dict] = []

    def say(message: str) -> None:
        log.append({"timestamp": _now(), "message": message})

    try:
        limits = DatasetLimits.from_request(request.limits)
        stats = parse_dataset(request.source, work_dir, request.format, request.options or {}, limits, say)
        return ParseOutcome("ready", log[-1]["message"], format=stats["format"], stats=stats, log=log)
    except DatasetRejected as exc:
        say(f"Failed: {exc}")
        return ParseOutcome.failed(str(exc), log)
    except MemoryError:
        raise  # the runner reports a parse that ran out of memory; a result written now could fail too
    except Exception as exc:  # a bug, or a file that breaks a library in a way not foreseen: never a crash
        traceback.print_exc()  # the whole traceback goes to the runner's parse.out
        where = traceback.extract_tb(exc.__traceback__)[-1]
        say(f"Internal error: {type(exc).__name__}: {exc} ({os.path.basename(where.filename)}, line {where.lineno})")
        return ParseOutcome.failed(f"The dataset could not be parsed: an internal error ({type(exc).__name__}). "
                                   "Check the file, or report it with the parse log.", log)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m training.datasets.child WORK_DIR", file=sys.stderr)
        return 2
    try:
        result = run(argv[1])
    except MemoryError:
        return OUT_OF_MEMORY
    write_result(argv[1], result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
