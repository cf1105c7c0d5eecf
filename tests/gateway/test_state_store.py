"""StateStore at shutdown, on a real Redis that went away and came back: a settlement that could not reach it is
pushed before the process leaves, so the room it reserved does not stay reserved for the rest of the window."""

from __future__ import annotations

import asyncio
import time

from gateway.config.schema import StateConfig
from gateway.state_store import StateStore
from policies.budgets import LimitSpec, LimitState
from policies.leases import LeasedStore
from policies.redis_client import RedisClient
from policies.redis_store import RedisStore
from tests.support.redis_server import RedisServer

TOKENS_DAY = (LimitSpec("budget[0]", "tokens", "day", 10_000),)


async def books(url: str, now: float) -> LimitState:
    client = RedisClient(url)
    try:
        (state,) = await RedisStore(client).state("acme", TOKENS_DAY, now)
        return state
    finally:
        await client.close()


def test_closing_pushes_a_settlement_redis_missed() -> None:
    server = RedisServer().start()
    try:

        async def scenario() -> tuple[int, LimitState]:
            now = time.time()
            state = StateStore(StateConfig(redis_url=server.url))
            leased = state.leased
            assert isinstance(leased, LeasedStore)
            assert (await state.store.reserve("acme", "r1", TOKENS_DAY, {"tokens": 500.0}, now)).admitted
            await state.store.settle("r1", {"tokens": 42.0})
            server.stop(persist=True)  # the reservation is on disk; the settlement will not get through
            await leased.flush()
            guarded = state.guarded
            assert guarded is not None
            owed = guarded.pending
            server.start()
            await state.close()
            return owed, await books(server.url, now)

        owed, after = asyncio.run(scenario())
    finally:
        server.close()
    assert owed == 1
    assert (after.reserved, after.spent) == (0, 42)
