"""`flask --app wsgi worker`: run background work from the queue (INFER_QUEUE_URL)."""

import os
import secrets
import socket

import click
from flask import current_app

from core.work import DEFAULT_QUEUES


def unique_worker_name() -> str:
    """host.pid.random: RQ refuses a name while the previous holder's record
    lives in Redis (up to its TTL, minutes), and in a container the host name
    and pid (1) are the same after every restart; the random part makes each
    start a new worker that registers at once."""
    return f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"


def write_health_file(path: str, name: str) -> None:
    """Where `python -m app.worker_health` finds which worker to ask Redis about."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(name + "\n")
    os.replace(temporary, path)  # a health check never reads half a name


@click.command("worker")
@click.option("--queues", "-q", default=",".join(DEFAULT_QUEUES), show_default=True,
              help="Comma-separated queues to take work from, in this order of preference: predictions "
                   "(asynchronous predictions), builds (uploaded models), datasets (parses), training (jobs). "
                   "A worker runs one job at a time, so give predictions workers of their own when "
                   "training jobs are long.")
@click.option("--burst", is_flag=True,
              help="Sweep once, run what is queued, then exit (instead of waiting for more work).")
@click.option("--name", default=None,
              help="The worker's name in Redis (default: host.pid.random, new on every start). A fixed name "
                   "cannot be taken again until the previous worker's record expires in Redis (minutes).")
@click.option("--health-file", default=None, type=click.Path(dir_okay=False),
              help="Write the worker's name to this file, for `python -m app.worker_health FILE` "
                   "(a container's health check).")
def worker_command(queues, burst, name, health_file):
    """Run builds, dataset parses, training jobs and asynchronous predictions
    from the queue in INFER_QUEUE_URL (Redis), one at a time, until SIGTERM.

    Run as many as the machine fits, on any host that reaches the database,
    Redis and the storage (S3, or the same data dir). Every worker also sweeps
    the database every INFER_QUEUE_SWEEP_S seconds and enqueues again the work
    whose message was lost or whose worker died. SIGTERM hands the running job
    back at once (a training job resumes from its last epoch checkpoint where
    the workers share INFER_DATA_DIR); a second SIGTERM stops at once.
    """
    work = current_app.extensions["work"]
    if not getattr(work, "queued", False):
        raise click.ClickException("INFER_QUEUE_URL is not set: without a queue every web process runs the "
                                   "background work itself, and no worker is needed.")
    names = [queue.strip() for queue in queues.split(",") if queue.strip()]
    unknown = sorted(set(names) - set(DEFAULT_QUEUES))
    if unknown or not names:
        raise click.BadParameter(f"unknown queues {unknown}; choose from {', '.join(DEFAULT_QUEUES)}",
                                 param_hint="--queues")
    from redis.exceptions import RedisError

    name = name or unique_worker_name()
    if health_file:
        try:
            write_health_file(health_file, name)
        except OSError as exc:
            raise click.BadParameter(f"cannot write {health_file}: {exc.strerror}", param_hint="--health-file")
    http = _serve_health(work, name)
    try:
        work.run_worker(names, burst=burst, name=name)
    except RedisError as exc:  # at start; once running, RQ waits for Redis to come back
        raise click.ClickException(f"The queue (INFER_QUEUE_URL) is unreachable: {exc}") from None
    finally:
        if http is not None:
            http.shutdown()


def _serve_health(work, name: str):
    """/healthz and /metrics on INFER_WORKER_HEALTH_PORT (app/worker_http.py); None when it is 0."""
    port = current_app.extensions["settings"].worker_health_port
    if not port:
        return None
    from app.worker_http import serve_worker_http
    from web.work_metrics import WorkCollector

    def describe():
        current = work.current
        return {"worker": name, "running": f"{current[0]} {current[1]}" if current else None,
                "stopping": work.stopping}

    try:
        collector = WorkCollector(work, current_app.extensions["db"].sessions,
                                  current_app.extensions["settings"].work_metrics_max_age_s)
        return serve_worker_http(port, collector, describe)
    except OSError as exc:
        raise click.ClickException(f"cannot serve health and metrics on port {port} "
                                   f"(INFER_WORKER_HEALTH_PORT): {exc.strerror}") from None
