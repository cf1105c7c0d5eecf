"""A reservation store whose reservations land at once but whose answers come late: the deadline, the shutdown
or the caller moves on while the reservation already exists in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from policies.budgets import Admission, LimitSpec, LimitState, Unit
from policies.redis_store import SpendRecordingStore


class SlowAfterReserve:
    settles_in_process = False

    def __init__(self, inner: SpendRecordingStore, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    async def reserve(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], asked: Mapping[Unit, float], now: float
    ) -> Admission:
        admission = await self.inner.reserve(scope, request_id, limits, asked, now)
        await asyncio.sleep(self.delay_s)
        return admission

    async def settle(self, request_id: str, actual: Mapping[Unit, float]) -> bool:
        return await self.inner.settle(request_id, actual)

    async def release(self, request_id: str, unused: Mapping[Unit, float]) -> bool:
        return await self.inner.release(request_id, unused)

    async def state(self, scope: str, limits: Sequence[LimitSpec], now: float) -> list[LimitState]:
        return await self.inner.state(scope, limits, now)

    async def record_spend(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], actual: Mapping[Unit, float], now: float
    ) -> bool:
        return await self.inner.record_spend(scope, request_id, limits, actual, now)
