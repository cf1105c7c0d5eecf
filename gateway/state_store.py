"""Where budgets and rate limits keep their counters: in process (embedded default) or in Redis,
shared by every worker and replica, behind a guard that bounds each call and applies
`state.on_error` while Redis is unreachable."""

from __future__ import annotations

from redis.asyncio import Redis

from gateway.config.schema import StateConfig
from policies.budgets import MemoryStore, ReservationStore
from policies.redis_store import GuardedStore, RedisStore

REDIS_TIMEOUT_S = 0.25  # every Redis call answers, or gives up, within this


class StateStore:
    def __init__(self, config: StateConfig) -> None:
        self._client: Redis | None = None
        self._guarded: GuardedStore | None = None
        if config.redis_url is None:
            self.store: ReservationStore = MemoryStore()
            return
        self._client = Redis.from_url(
            config.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S
        )
        self._guarded = GuardedStore(RedisStore(self._client), config.on_error, timeout_s=REDIS_TIMEOUT_S)
        self.store = self._guarded

    @property
    def mode(self) -> str:
        return self._guarded.mode if self._guarded is not None else "in_process"

    async def close(self) -> None:
        if self._guarded is not None:
            await self._guarded.aclose()
        if self._client is not None:
            await self._client.aclose()
