"""The deadline wheel behaves as `asyncio.timeout` does, only coarser: never early, at most a tick late."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from gateway.deadlines import TICK_S, DeadlineWheel

LOOPS = [pytest.param(asyncio.new_event_loop, id="asyncio"), pytest.param(uvloop.new_event_loop, id="uvloop")]


def run(make_loop: object, coroutine: object) -> object:
    loop = make_loop()  # type: ignore[operator]
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


@pytest.mark.parametrize("make_loop", LOOPS)
def test_an_expired_deadline_cancels_the_work_and_raises_timeout_error_not_early(make_loop: object) -> None:
    async def scenario() -> float:
        wheel = DeadlineWheel()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with wheel.timeout(0.05) as deadline:
                await asyncio.sleep(5)
        assert deadline.expired
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        return time.monotonic() - started

    elapsed = run(make_loop, scenario())
    assert isinstance(elapsed, float)
    assert elapsed >= 0.05
    assert elapsed < 1.0  # a correctness bound (it fires within a tick or so), not a timing measurement


@pytest.mark.parametrize("make_loop", LOOPS)
def test_work_that_finishes_in_time_is_untouched_and_the_wheel_stops_ticking(make_loop: object) -> None:
    async def scenario() -> None:
        wheel = DeadlineWheel()
        for _ in range(100):
            async with wheel.timeout(30) as deadline:
                await asyncio.sleep(0)
            assert not deadline.expired
        async with wheel.timeout(None):  # no deadline at all
            await asyncio.sleep(0.01)
        assert all(not bucket for bucket in wheel._buckets.values())  # every finished scope left its bucket
        async with wheel.timeout(TICK_S):
            await asyncio.sleep(0)
        await asyncio.sleep(TICK_S * 5)
        assert not wheel._ticking  # the buckets have passed: no callback keeps running on an idle loop

    run(make_loop, scenario())


@pytest.mark.parametrize("make_loop", LOOPS)
def test_a_cancel_from_elsewhere_is_not_turned_into_a_timeout(make_loop: object) -> None:
    async def scenario() -> None:
        wheel = DeadlineWheel()

        async def work() -> None:
            async with wheel.timeout(30):
                await asyncio.sleep(5)

        task = asyncio.get_running_loop().create_task(work())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(make_loop, scenario())


@pytest.mark.parametrize("make_loop", LOOPS)
def test_nested_deadlines_the_inner_one_expires_first(make_loop: object) -> None:
    async def scenario() -> None:
        wheel = DeadlineWheel()
        async with wheel.timeout(30) as outer:
            with pytest.raises(TimeoutError):
                async with wheel.timeout(0.02):
                    await asyncio.sleep(5)
            await asyncio.sleep(0)  # the outer scope goes on
        assert not outer.expired

    run(make_loop, scenario())


def test_an_exception_inside_an_expired_scope_is_kept() -> None:
    async def scenario() -> None:
        wheel = DeadlineWheel()
        with pytest.raises(KeyError):
            async with wheel.timeout(0.01):
                try:
                    await asyncio.sleep(5)
                except asyncio.CancelledError:
                    raise KeyError("raised while being cancelled") from None

    run(asyncio.new_event_loop, scenario())
