"""Models loaded at start (INFER_PRELOAD_MODELS), so that no request pays for a load.

create_app starts a thread that loads the list; under gunicorn, post_worker_init
(gunicorn.conf.py) waits for it, so a worker accepts no request before its models
are in: a client that connects meanwhile waits in the listening socket's queue
for a worker that is ready. Each worker loads its own copy. The first load of an
ONNX model builds its export under a file lock (model_registry/onnx_export.py):
one worker builds it, the others wait for the lock and load what it built, so
it is built once, not once per worker; on a restart it is there already.

Why each worker loads its own copy instead of sharing one loaded before fork,
and why the export is not built in a separate process before the workers start:
see docs/operations/starting.md.
"""

def preload_entries(raw: str) -> list[str]:
    """INFER_PRELOAD_MODELS ("task:name,model-key,...") as a list of entries."""
    return [entry.strip() for entry in raw.split(",") if entry.strip()]


def wait_until_loaded(registry, keep_alive, still_wanted) -> None:
    """Block (in post_worker_init) until the worker's preload thread is done.

    `keep_alive` is called every second: gunicorn kills a worker that does not
    report within its timeout, and a load can take longer. `still_wanted` turns
    false when the worker is told to stop meanwhile."""
    while not registry.preload_done.wait(1):
        keep_alive()
        if not still_wanted():
            return


def loaded_summary(registry, entries: list[str]) -> str:
    """"english (all-MiniLM-L6-v2 on onnx), ..." for the preload entries that loaded."""
    parts = []
    for entry in entries:
        if entry in registry.preload_errors:
            continue
        name = entry.split(":", 1)[1] if ":" in entry else entry
        try:
            key = registry.preload_key(entry)
        except Exception:
            continue
        served = registry.cache.peek(key)
        if served is not None:
            parts.append(f"{name} ({key} on {served.backend})" if name != key else f"{key} on {served.backend}")
    return ", ".join(parts) or "none"
