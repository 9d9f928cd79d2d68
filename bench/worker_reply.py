"""How long a user model's worker reply of N MiB takes to read: the worker client
(uploads/worker_client.py) against the reader it replaced (bytes +=, the whole
buffer searched for a newline after every 64 KiB read), in the same run.

    .venv/bin/python bench/worker_reply.py [--mib 80] [--rounds 3]
"""

import argparse
import json
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from uploads.worker_client import WorkerProcess  # noqa: E402

WORKER = r'''
import json, sys
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    sys.stdout.write(json.dumps({"output": "x" * json.loads(line)["input"]["size"]}) + "\n")
    sys.stdout.flush()
'''


def start() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


def previous_reader(size: int) -> float:
    """The reader before this change, as it was: bytes +=, `in` over the whole buffer."""
    process = start()
    received = b""
    stdout = process.stdout.fileno()

    def read_line() -> bytes:
        nonlocal received
        while b"\n" not in received:
            select.select([stdout], [], [])
            received += os.read(stdout, 1 << 16)
        line, _, received = received.partition(b"\n")
        return line

    read_line()  # ready
    started = time.perf_counter()
    process.stdin.write(json.dumps({"task": "custom", "input": {"size": size}}).encode() + b"\n")
    json.loads(read_line())
    seconds = time.perf_counter() - started
    stop(process)
    return seconds


def current_reader(size: int) -> float:
    client = WorkerProcess("bench", start, stop, call_timeout_s=600, load_timeout_s=60, max_reply_bytes=size + 1024)
    client.call("custom", {"size": 1})  # started and loaded
    started = time.perf_counter()
    client.call("custom", {"size": size})
    seconds = time.perf_counter() - started
    client.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.mib * 2**20
    for round_number in range(1, args.rounds + 1):
        current, previous = current_reader(size), previous_reader(size)
        print(f"round {round_number}: {args.mib} MiB reply: worker client {current:.2f} s, "
              f"previous reader {previous:.2f} s, ratio {previous / current:.1f}x")


if __name__ == "__main__":
    main()
