"""What a subverted training or dataset-parse child would try, run in the
child's place (`python -c` with this file's text, argv[1] the targets as JSON):
read the service's files and another account's, write the service's code,
reach the network, see the service's environment. Every attempt's outcome goes
back the way the child's own report would: a parse's result file, or a
training job's "failed" event, whose message is the JSON of the findings.

Run by tests/training/test_child_sandbox.py; never imported by the service."""

import json
import os
import socket
import sys


def attempt(action) -> str:
    try:
        action()
    except OSError as exc:
        return f"blocked: {type(exc).__name__}: {exc.strerror}"
    return "allowed"


def read(path: str) -> None:
    if os.path.isdir(path):
        os.listdir(path)
    else:
        with open(path, "rb") as source:
            source.read(1)


def write(path: str) -> None:
    with open(path, "a") as out:
        out.write("written by a child")


def connect(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=3):
        pass


def main() -> None:
    targets = json.loads(sys.argv[1])
    found = {
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "secret_env": sorted(name for name in os.environ if name.startswith(("INFER_", "AWS_"))
                             or name == "DATABASE_URL"),
        "environ_text": json.dumps(dict(os.environ)),
        "processes": sorted(int(name) for name in os.listdir("/proc") if name.isdigit()),
    }
    for kind in ("read", "own_read"):  # own_*: what the child needs, the control that it ran where it should
        for name, path in targets.get(kind, {}).items():
            found[f"{kind} {name}"] = attempt(lambda path=path: read(path))
    for kind in ("write", "own_write"):
        for name, path in targets.get(kind, {}).items():
            found[f"{kind} {name}"] = attempt(lambda path=path: write(path))
    for name, (host, port) in targets["connect"].items():
        found[f"connect {name}"] = attempt(lambda host=host, port=port: connect(host, port))
    for name, path in targets.get("list", {}).items():
        found[f"list {name}"] = sorted(os.listdir(path)) if os.path.isdir(path) else None
    report = json.dumps(found)
    if targets["report"] == "parse":
        with open(os.path.join(targets["work_dir"], "parse_result.json"), "w") as out:
            json.dump({"status": "failed", "format": None, "stats": None, "message": report, "log": []}, out)
    else:  # a training child's events pipe is its stdout in the sandbox
        print(json.dumps({"event": "failed", "message": report}), flush=True)


main()
