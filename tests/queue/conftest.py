"""A Redis server for the queue tests, empty at the start of each test."""

import pytest
from redis import Redis
from redis.exceptions import RedisError

from ..redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server):
    try:
        Redis.from_url(redis_server.url, socket_connect_timeout=1).flushall()
    except RedisError:  # a test stopped it
        redis_server.start()
    return redis_server.url
