"""Redis fixtures for the reservation-store tests: a clean db per test on the session's server (tests/conftest.py).

`redis_client` is a `redis.asyncio.Redis`; its connections belong to the event loop that opened them, so a
test closes it (`await redis_client.aclose()`) before its `asyncio.run(...)` returns. Closed, it reconnects
in the next loop.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio as aredis

from tests.support.redis_server import RedisServer


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[aredis.Redis]:
    if redis_server.process is None:  # a test stopped it and failed before bringing it back
        redis_server.start()
    redis_server.flush()
    yield aredis.Redis.from_url(redis_server.url)
