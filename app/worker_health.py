"""`python -m app.worker_health FILE`: exit 0 while the queue worker named in
FILE (written by `flask --app wsgi worker --health-file FILE`) is registered in
Redis, 1 otherwise, with the reason on stdout. A container's health check for
a worker, which serves no HTTP.

What it means: RQ keeps a live worker's record (rq:worker:<name>) with a TTL
that the worker renews on every heartbeat (at least every 420 s, and for the
whole of a job's time limit while it runs one); a worker that stopped marks it
dead, and one that was killed or lost Redis lets it expire. So "registered" is
RQ's own idea of alive, with the same delay. It imports neither the app nor
torch: a check every 30 s must cost little.
"""

import sys

from redis import Redis
from redis.exceptions import RedisError

from core.settings import Settings

WORKER_KEY_PREFIX = "rq:worker:"  # rq.worker.BaseWorker.redis_worker_namespace_prefix
CHECK_TIMEOUT_S = 5


def check(name_file: str, queue_url: str) -> str | None:
    """None when the worker is alive, else why not."""
    if not queue_url:
        return "INFER_QUEUE_URL is not set: there is no queue to ask."
    try:
        with open(name_file, encoding="utf-8") as file:
            name = file.read().strip()
    except OSError as exc:
        return f"no worker name in {name_file} ({exc.strerror}): the worker has not started yet"
    if not name:
        return f"{name_file} is empty"
    try:
        redis = Redis.from_url(queue_url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S)
        record = redis.hgetall(WORKER_KEY_PREFIX + name)
    except RedisError as exc:
        return f"Redis (INFER_QUEUE_URL) does not answer: {exc}"
    if not record:
        return f"worker {name} is not registered in Redis: it stopped, or lost Redis for longer than its TTL"
    if b"death" in record:
        return f"worker {name} has stopped"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m app.worker_health FILE  (the --health-file of `flask --app wsgi worker`)")
        return 2
    problem = check(argv[0], Settings.from_environ().queue_url)
    print(problem or "worker registered in Redis")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
