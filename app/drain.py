"""Whether this server is draining: told to stop (SIGTERM), still serving.

Kubernetes sends SIGTERM and takes the pod out of its Service at about the same
time; the two race, so a server that stops taking connections at once still
gets new ones for a moment and refuses them. Instead, on the first SIGTERM the
gunicorn master (gunicorn.conf.py) leaves a marker file and keeps serving for
INFER_DRAIN_S: every worker's /readyz answers 503 from then on (the marker is
in the folder all of them share), the load balancer stops sending, and then
gunicorn's own graceful stop runs (no new connections, requests in progress
finish within INFER_GRACEFUL_TIMEOUT_S). A second SIGTERM stops at once.

A file, not a signal to each worker: gunicorn's workers take SIGTERM as "stop",
and a worker started during the drain (one replaced) must see it too.
"""

import os

MARKER = "draining"


def server_folder() -> str | None:
    """The folder gunicorn.conf.py shares between its master and workers (its
    _ready_dir, under PROMETHEUS_MULTIPROC_DIR); None outside gunicorn."""
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return os.path.join(metrics_dir, "ready") if metrics_dir else None


def marker_path(folder: str) -> str:
    return os.path.join(folder, MARKER)


def mark_draining(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    open(marker_path(folder), "w").close()


def draining(folder: str | None) -> bool:
    """True once the master marked `folder` (None outside gunicorn: never)."""
    return bool(folder) and os.path.exists(marker_path(folder))
