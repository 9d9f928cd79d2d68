"""The "ready" line scripts/serve prints once every gunicorn worker has loaded its models.

gunicorn's master has no hook for "a worker is ready", so each worker, once its
preload is done, leaves a marker in a folder the master made (and clears a dead
worker's marker from, in child_exit); the worker that makes the count reach the
configured number of workers prints the line. An exclusive create of one more file
makes sure it is printed once, even when two workers finish together or a
worker is replaced later.
"""

import os

ANNOUNCED = "announced"


def worker_ready(folder: str, pid: int, workers: int) -> bool:
    """Record worker `pid` as ready; True for the one call that should print the line."""
    open(os.path.join(folder, f"worker-{pid}"), "w").close()
    ready = sum(1 for name in os.listdir(folder) if name.startswith("worker-"))
    if ready < workers:
        return False
    try:
        os.close(os.open(os.path.join(folder, ANNOUNCED), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def worker_gone(folder: str, pid: int) -> None:
    try:
        os.remove(os.path.join(folder, f"worker-{pid}"))
    except FileNotFoundError:
        pass


def base_url(bind: str) -> str:
    """The URL a user types for gunicorn's bind address."""
    if bind.startswith("unix:"):
        return bind
    host, _, port = bind.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def ready_text(bind: str, workers: int, models: str, errors: dict[str, str]) -> str:
    url = base_url(bind)
    if errors:
        failed = "; ".join(f"{entry}: {error}" for entry, error in errors.items())
        head = (f"started, NOT ready: {url} ({workers} workers; models loaded: {models}; failed to load: {failed}). "
                f"{url}/readyz answers 503 with the reason; requests for other models are served.")
    else:
        head = f"ready: {url} ({workers} workers; models loaded: {models})"
    if url.startswith("unix:"):
        return head
    return (f"{head}\n"
            f"  next: the dashboard at {url}/ui/ (sign in with the first API key: data dir, first-api-key),\n"
            f"        the API docs at {url}/docs, a first request as in the README's \"First request\"")
