"""Where the rate-limit counters live: a limit holds across the 2 workers of a real
gunicorn with the default storage (a SQLite file of the host), and across two
app instances sharing Redis (as replicas do); an unreachable storage lets
requests pass instead of refusing them, and limits come back with it."""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import requests
from limits import RateLimitItemPerMinute
from limits.strategies import SlidingWindowCounterRateLimiter

from core.limits_storage import SQLiteStorage
from core.settings import Settings
from web.rate_limits import storage_uri

from ..conftest import new_key, until
from ..gunicorn import production_server
from ..redis_server import RedisServer
from ..servers import free_port

UNKNOWN_MODEL = {"text": "hello", "model": "no-such-model"}  # a 404, at once: every request still counts


@pytest.fixture
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.close()


def test_the_default_storage_is_queue_urls_redis_else_a_file_in_the_data_dir():
    config = Settings(rate_limit_storage="", queue_url="", data_dir="/srv/data")
    assert storage_uri(config) == "sqlite:////srv/data/rate_limits.db"
    assert storage_uri(replace(config, queue_url="redis://queue:6379/0")) == "redis://queue:6379/0"
    assert storage_uri(replace(config, queue_url="redis://q/0", rate_limit_storage="memory://")) == "memory://"
    with pytest.raises(ValueError, match="INFER_RATE_LIMIT_STORAGE"):
        storage_uri(replace(config, rate_limit_storage="mysql://db"))


def test_the_sqlite_storage_counts_hits_from_many_threads_and_processes_exactly(tmp_path):
    uri = f"sqlite:///{tmp_path}/counters.db"
    limit, item = 50, RateLimitItemPerMinute(50)

    def hits(storages: int) -> int:
        """Hits from 8 threads, each on its own storage object (its own connection), 20 each."""
        stores = [SlidingWindowCounterRateLimiter(SQLiteStorage(uri)) for _ in range(storages)]
        with ThreadPoolExecutor(8) as pool:
            return sum(pool.map(lambda n: sum(stores[n % storages].hit(item, "account") for _ in range(20)),
                                range(8)))

    assert hits(storages=4) == limit  # 160 tries, exactly the limit passed
    # A forked child (a gunicorn worker) opens its own connection and sees the same counts.
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, b"1" if SlidingWindowCounterRateLimiter(SQLiteStorage(uri)).hit(item, "account") else b"0")
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 1) == b"0"


def test_a_limit_holds_across_the_two_workers_of_gunicorn_with_the_default_storage(tmp_path):
    access_log = tmp_path / "access.log"
    limit = 5
    with production_server(tmp_path, INFER_ACCOUNT_REQUESTS_PER_MIN=str(limit), INFER_WORKERS="2",
                           INFER_THREADS="8", INFER_ACCESS_LOG=str(access_log),
                           GUNICORN_CMD_ARGS="--access-logformat '%(p)s %(m)s %(U)s %(s)s'") as server:
        [key] = server.printed_keys()
        statuses = []

        def send(_):
            return requests.post(server.url + "/text-vectorisation", json=UNKNOWN_MODEL,
                                 headers={"x-api-key": key}, timeout=60).status_code

        def workers_that_answered() -> set:
            lines = access_log.read_text().splitlines() if access_log.exists() else []
            return {line.split()[0] for line in lines if " POST /text-vectorisation " in line}

        # New connections from many threads, until both workers have answered some.
        with ThreadPoolExecutor(16) as pool:
            def both_answered():
                statuses.extend(pool.map(send, range(32)))
                return len(workers_that_answered()) == 2

            until(both_answered, timeout_s=120)
        limits_seen = requests.get(server.url + "/limits", headers={"x-api-key": key}, timeout=30).json()
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    # Per-process counters would have let each worker pass up to 5 (up to 10 in all).
    assert len(statuses) > 2 * limit
    assert statuses.count(404) == limit and statuses.count(429) == len(statuses) - limit
    assert limits_seen["remaining_requests"] == 0
    assert (tmp_path / "data" / "rate_limits.db").exists()


def test_a_limit_holds_across_two_app_instances_sharing_queue_urls_redis(make_app, tmp_path, redis_server):
    shared = {"DATABASE_URL": f"sqlite:///{tmp_path}/shared.db", "QUEUE_URL": redis_server.url,
              "ACCOUNT_REQUESTS_PER_MIN": 4}
    first = make_app(DATA_DIR=str(tmp_path / "replica1"), **shared)
    second = make_app(DATA_DIR=str(tmp_path / "replica2"), **shared)
    assert first.extensions["rate_limits"].uri == redis_server.url
    key = new_key(first, "mallory")
    other = new_key(first, "alice")
    answers = []
    for app in (first, second, first, second, first, second):
        answers.append(app.test_client().post("/text-vectorisation", json=UNKNOWN_MODEL,
                                              headers={"x-api-key": key}).status_code)
    assert answers == [404, 404, 404, 404, 429, 429]
    assert second.test_client().post("/text-vectorisation", json=UNKNOWN_MODEL,
                                     headers={"x-api-key": other}).status_code == 404
    assert not os.path.exists(tmp_path / "replica1" / "rate_limits.db")


def test_requests_pass_while_redis_is_unreachable_and_are_limited_again_when_it_is_back(
        make_app, redis_server, caplog):
    app = make_app(RATE_LIMIT_STORAGE=redis_server.url, ACCOUNT_REQUESTS_PER_MIN=2)
    client, headers = app.test_client(), {"x-api-key": new_key(app, "mallory")}

    def status() -> int:
        return client.post("/text-vectorisation", json=UNKNOWN_MODEL, headers=headers).status_code

    assert [status(), status(), status()] == [404, 404, 429]
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="web.rate_limits"):
        answers = [client.post("/text-vectorisation", json=UNKNOWN_MODEL, headers=headers) for _ in range(20)]
    assert [answer.status_code for answer in answers] == [404] * 20
    assert not any("x-ratelimit-limit-requests" in answer.headers for answer in answers)
    warnings = [record.getMessage() for record in caplog.records if "not enforced" in record.getMessage()]
    assert len(warnings) == 1 and "Requests pass unlimited" in warnings[0]
    assert client.get("/healthz").status_code == 200

    redis_server.start()  # empty: the counts start over
    until(lambda: status() == 429, timeout_s=60)


def test_an_unreachable_storage_from_the_start_lets_requests_pass(make_app):
    app = make_app(RATE_LIMIT_STORAGE=f"redis://127.0.0.1:{free_port()}/0", ACCOUNT_REQUESTS_PER_MIN=1)
    client, headers = app.test_client(), {"x-api-key": new_key(app, "mallory")}
    assert [client.post("/text-vectorisation", json=UNKNOWN_MODEL, headers=headers).status_code
            for _ in range(5)] == [404] * 5
