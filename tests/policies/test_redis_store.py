"""RedisStore against MemoryStore's semantics, under races and across processes; GuardedStore during outages.

The stores talk through `policies.redis_client.RedisClient` (the `client` fixture: a flushed db on the session's
server); redis-py (`redis_client`) only inspects keys and TTLs.

Async code runs with `asyncio.run(...)` inside plain test functions. Redis comes from a throwaway
redis-server (tests/support/redis_server.py), installed with apt-get when missing: nothing here skips.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aredis

from policies.budgets import Admission, LimitSpec, LimitState, MemoryStore, ReservationStore, Unit, window_span
from policies.redis_client import RedisClient
from policies.redis_store import GuardedStore, RedisStore, StoreUnavailable
from tests.support.redis_server import BlackHole, RedisServer
from tests.support.slow_store import SlowAfterReserve


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


NOW = ts(2025, 3, 14, 12, 30, 15) + 0.25
TOKENS_DAY = LimitSpec("budget[0]", "tokens", "day", 1000)
USD_MONTH = LimitSpec("budget[1]", "usd", "month", 1.0)
RPM = LimitSpec("rpm", "requests", "minute", 2)
TPM = LimitSpec("tpm", "tokens", "minute", 600)

Case = Callable[[ReservationStore], Awaitable[None]]


@pytest.fixture
def client(redis_client: aredis.Redis, redis_server: RedisServer) -> RedisClient:
    """Our client on the session's server; `redis_client` flushed the db. Closed by the test, in its loop."""
    return RedisClient(redis_server.url)


async def one(store: ReservationStore, spec: LimitSpec, now: float = NOW, scope: str = "acme") -> LimitState:
    (state,) = await store.state(scope, [spec], now)
    return state


# ── conformance: the same table against MemoryStore and RedisStore ─────────────────────────────────────────


async def admit_within_limit(store: ReservationStore) -> None:
    assert await store.reserve("acme", "r1", [TOKENS_DAY], {"tokens": 400}, NOW) == Admission(True)
    state = await one(store, TOKENS_DAY)
    assert (state.reserved, state.spent, state.remaining) == (400, 0, 600)
    assert state.span == window_span("day", NOW)
    assert (await one(store, TOKENS_DAY, scope="other")).reserved == 0  # scopes are separate


async def deny_when_exceeding(store: ReservationStore) -> None:
    """Denied until the window's end when what was spent leaves no room; in a second (`held`) when the room is
    only reserved by requests in flight, which settle at what they spent."""
    assert (await store.reserve("acme", "r1", [TOKENS_DAY], {"tokens": 700}, NOW)).admitted
    denied = await store.reserve("acme", "r2", [TOKENS_DAY], {"tokens": 301}, NOW)
    day_end = window_span("day", NOW).end
    assert denied == Admission(False, TOKENS_DAY, 1.0, held=True, remaining=300)  # what the limit has left
    assert (await one(store, TOKENS_DAY)).reserved == 700  # the denial reserved nothing
    assert (await store.reserve("acme", "r3", [TOKENS_DAY], {"tokens": 300}, NOW)).admitted  # exactly full fits
    assert (await store.reserve("acme", "r4", [TOKENS_DAY], {"usd": 5.0}, NOW)).admitted  # asks no tokens
    assert await store.settle("r1", {"tokens": 650})
    exhausted = await store.reserve("acme", "r5", [TOKENS_DAY], {"tokens": 351}, NOW)
    # 650 spent: no room before then (and the 300 of r3 held)
    assert exhausted == Admission(False, TOKENS_DAY, math.ceil(day_end - NOW), remaining=50)
    assert await store.reserve("acme", "r6", [TOKENS_DAY], {"tokens": 350}, NOW) == Admission(
        False, TOKENS_DAY, 1.0, held=True, remaining=50
    )
    late = await store.reserve("acme", "r7", [TOKENS_DAY], {"tokens": 351}, day_end - 0.5)
    assert late == Admission(False, TOKENS_DAY, 1.0, remaining=50)  # at least a second


async def all_or_nothing(store: ReservationStore) -> None:
    limits = [TOKENS_DAY, USD_MONTH, RPM]
    ask: dict[Unit, float] = {"tokens": 100, "usd": 0.5, "requests": 1}
    assert (await store.reserve("acme", "a", limits, ask, NOW)).admitted
    assert (await store.reserve("acme", "b", limits, ask, NOW)).admitted
    third = await store.reserve("acme", "c", limits, {"tokens": 100, "usd": 0.0, "requests": 1}, NOW)
    assert (third.admitted, third.denied, third.retry_after_s) == (False, RPM, 45)
    later = NOW + 60  # a new minute: rpm has room, the month's usd does not
    fourth = await store.reserve("acme", "d", limits, {"tokens": 100, "usd": 0.25, "requests": 1}, later)
    assert (fourth.admitted, fourth.denied) == (False, USD_MONTH)
    states = await store.state("acme", limits, NOW)
    assert [(s.reserved, s.spent) for s in states] == [(200, 0), (1.0, 0), (2, 0)]
    assert (await one(store, RPM, later)).reserved == 0  # nothing reserved in the new minute either
    assert (await one(store, TOKENS_DAY, later)).reserved == 200


async def settle_moves_reserved_to_spent(store: ReservationStore) -> None:
    limits = [TOKENS_DAY, TPM, USD_MONTH]
    assert (await store.reserve("acme", "r1", limits, {"tokens": 500, "usd": 0.25}, NOW)).admitted
    assert await store.settle("r1", {"tokens": 321, "usd": 0.125}) is True
    states = await store.state("acme", limits, NOW)
    assert [(s.reserved, s.spent) for s in states] == [(0, 321), (0, 321), (0, 0.125)]
    assert states[0].remaining == 679


async def settle_twice_is_noop(store: ReservationStore) -> None:
    assert (await store.reserve("acme", "r1", [TOKENS_DAY], {"tokens": 500}, NOW)).admitted
    assert await store.settle("r1", {"tokens": 200}) is True
    assert await store.settle("r1", {"tokens": 999}) is False
    assert await store.settle("never-reserved", {"tokens": 5}) is False
    state = await one(store, TOKENS_DAY)
    assert (state.reserved, state.spent) == (0, 200)


async def release_gives_back_part_and_the_settlement_the_rest(store: ReservationStore) -> None:
    limits = [TOKENS_DAY, USD_MONTH]
    assert (await store.reserve("acme", "r1", limits, {"tokens": 600, "usd": 0.5}, NOW)).admitted
    assert await store.release("r1", {"tokens": 450, "usd": 2.0}) is True  # (at most what it holds)
    assert [(s.reserved, s.spent) for s in await store.state("acme", limits, NOW)] == [(150, 0), (0, 0)]
    assert await store.settle("r1", {"tokens": 100, "usd": 0.125}) is True
    assert [(s.reserved, s.spent) for s in await store.state("acme", limits, NOW)] == [(0, 100), (0, 0.125)]
    assert await store.release("r1", {"tokens": 1}) is False  # settled: nothing left to give back


async def reserve_twice_counts_once(store: ReservationStore) -> None:
    assert (await store.reserve("acme", "r1", [TOKENS_DAY], {"tokens": 600}, NOW)).admitted
    assert await store.reserve("acme", "r1", [TOKENS_DAY], {"tokens": 600}, NOW) == Admission(True)
    assert (await one(store, TOKENS_DAY)).reserved == 600
    assert await store.settle("r1", {"tokens": 600}) is True
    assert await store.settle("r1", {"tokens": 600}) is False
    state = await one(store, TOKENS_DAY)
    assert (state.reserved, state.spent) == (0, 600)


async def windows_roll_over(store: ReservationStore) -> None:
    rpm1 = LimitSpec("rpm", "requests", "minute", 1)
    last_second = ts(2025, 1, 31, 23, 59, 59)
    assert (await store.reserve("acme", "m1", [rpm1], {"requests": 1}, last_second + 0.5)).admitted
    assert await store.reserve("acme", "m2", [rpm1], {"requests": 1}, last_second + 0.9) == Admission(
        False, rpm1, 1, remaining=0
    )
    assert (await store.reserve("acme", "m3", [rpm1], {"requests": 1}, last_second + 1.0)).admitted

    assert (await store.reserve("acme", "u1", [USD_MONTH], {"usd": 1.0}, last_second)).admitted
    january = await store.reserve("acme", "u2", [USD_MONTH], {"usd": 0.01}, last_second)
    assert (january.denied, january.retry_after_s) == (USD_MONTH, 1)
    february = ts(2025, 2, 1)
    assert (await store.reserve("acme", "u3", [USD_MONTH], {"usd": 0.75}, february)).admitted
    assert await store.settle("u1", {"usd": 0.5}) is True  # settled in February, booked in January's window
    jan, feb = await one(store, USD_MONTH, last_second), await one(store, USD_MONTH, february)
    assert (jan.span.start, jan.span.end) == (ts(2025, 1, 1), february)
    assert (feb.span.start, feb.span.end) == (february, ts(2025, 3, 1))
    assert (jan.reserved, jan.spent, feb.reserved, feb.spent) == (0, 0.5, 0.75, 0)


async def usd_decimals(store: ReservationStore) -> None:
    limit = LimitSpec("budget[0]", "usd", "day", 1.0)
    for i in range(10):
        assert (await store.reserve("acme", f"r{i}", [limit], {"usd": 0.1}, NOW)).admitted, i
    assert (await store.reserve("acme", "r10", [limit], {"usd": 0.1}, NOW)).denied == limit
    assert (await store.reserve("acme", "tiny", [limit], {"usd": 0.000001}, NOW)).denied == limit
    for i in range(10):
        assert await store.settle(f"r{i}", {"usd": 0.0123456789})
    state = await one(store, limit)
    assert state.reserved == pytest.approx(0, abs=1e-12)
    assert state.spent == pytest.approx(0.123456789, abs=1e-12)
    assert (await store.reserve("acme", "r11", [limit], {"usd": 0.8765}, NOW)).admitted
    assert (await store.reserve("acme", "r12", [limit], {"usd": 0.001}, NOW)).denied == limit


async def odd_scopes_and_ids(store: ReservationStore) -> None:
    scope, rid = 'tenant "ü" 🚀 \\ x', 'req-ü-🚀-"quoted"'
    assert (await store.reserve(scope, rid, [TOKENS_DAY, USD_MONTH], {"tokens": 10, "usd": 0.5}, NOW)).admitted
    assert (await one(store, TOKENS_DAY, scope=scope)).reserved == 10
    assert await store.settle(rid, {"tokens": 4, "usd": 0.25})
    states = await store.state(scope, [TOKENS_DAY, USD_MONTH], NOW)
    assert [(s.reserved, s.spent) for s in states] == [(0, 4), (0, 0.25)]
    assert (await store.reserve("acme", "empty", [], {"tokens": 10}, NOW)).admitted  # no limits: nothing to hold
    assert await store.settle("empty", {"tokens": 10}) is True


async def counters_follow_unit_and_window_not_the_limit_s_place(store: ReservationStore) -> None:
    """A reload that moves a budget in the list (one removed or added before it) keeps its window's spend; limits
    of one unit and window share one counter, reserved once and each held to its own ceiling."""
    assert (await store.reserve("acme", "r1", [TOKENS_DAY, USD_MONTH], {"tokens": 700, "usd": 0.5}, NOW)).admitted
    assert await store.settle("r1", {"tokens": 700, "usd": 0.5})
    moved = [LimitSpec("budget[0]", "usd", "month", 1.0), LimitSpec("budget[1]", "tokens", "day", 1000)]
    denied = await store.reserve("acme", "r2", moved, {"tokens": 301, "usd": 0.1}, NOW)
    assert denied == Admission(False, moved[1], math.ceil(window_span("day", NOW).end - NOW), remaining=300)
    assert [s.spent for s in await store.state("acme", moved, NOW)] == [0.5, 700]
    tight = LimitSpec("budget[0]", "tokens", "minute", 500)
    assert (await store.reserve("acme", "r3", [tight, TPM], {"tokens": 300}, NOW)).admitted
    assert [s.reserved for s in await store.state("acme", [tight, TPM], NOW)] == [300, 300]
    shared = await store.reserve("acme", "r4", [TPM, tight], {"tokens": 201}, NOW)
    assert (shared.denied, shared.remaining) == (tight, 200)  # the lower ceiling's room, of the one counter
    assert (await store.reserve("acme", "r5", [TPM, tight], {"tokens": 200}, NOW)).admitted
    assert await store.settle("r3", {"tokens": 250})
    assert await store.settle("r5", {"tokens": 150})
    assert [(s.reserved, s.spent) for s in await store.state("acme", [tight, TPM], NOW)] == [(0, 400), (0, 400)]


async def a_limit_spent_out_is_named_before_one_only_held(store: ReservationStore) -> None:
    """A request that fits neither a limit whose room is only held by requests in flight (come back in a second)
    nor one whose spend leaves no room (come back when its window ends) is told the second: no wait of a second
    lets it in, whatever the order of the limits."""
    month_end = math.ceil(window_span("month", NOW).end - NOW)
    assert (await store.reserve("acme", "r0", [USD_MONTH], {"usd": 0.95}, NOW)).admitted
    assert await store.settle("r0", {"usd": 0.95})  # the month's dollars are spent but for 0.05
    assert (await store.reserve("acme", "r1", [TOKENS_DAY], {"tokens": 700}, NOW)).admitted  # in flight
    for limits in ([TOKENS_DAY, USD_MONTH], [USD_MONTH, TOKENS_DAY]):
        denied = await store.reserve("acme", "r2", limits, {"tokens": 400, "usd": 0.1}, NOW)
        assert replace(denied, remaining=None) == Admission(False, USD_MONTH, month_end), limits
        assert denied.remaining == pytest.approx(0.05)
    held = await store.reserve("acme", "r3", [TOKENS_DAY, USD_MONTH], {"tokens": 400, "usd": 0.01}, NOW)
    # the dollars fit: only the held tokens do not
    assert held == Admission(False, TOKENS_DAY, 1.0, held=True, remaining=300)
    # requests in flight are spent as one each: an rpm they fill has no room before its minute ends
    for rid in ("r4", "r5"):
        assert (await store.reserve("acme", rid, [RPM], {"requests": 1}, NOW)).admitted
    rpm_full = await store.reserve("acme", "r6", [TOKENS_DAY, RPM], {"tokens": 400, "requests": 1}, NOW)
    assert rpm_full == Admission(False, RPM, math.ceil(window_span("minute", NOW).end - NOW), remaining=0)


CASES: list[Case] = [
    odd_scopes_and_ids,
    admit_within_limit,
    deny_when_exceeding,
    all_or_nothing,
    settle_moves_reserved_to_spent,
    release_gives_back_part_and_the_settlement_the_rest,
    settle_twice_is_noop,
    reserve_twice_counts_once,
    windows_roll_over,
    usd_decimals,
    counters_follow_unit_and_window_not_the_limit_s_place,
    a_limit_spent_out_is_named_before_one_only_held,
]


def run_with(request: pytest.FixtureRequest, kind: str, body: Callable[[ReservationStore], Awaitable[None]]) -> None:
    if kind == "memory":
        asyncio.run(body(MemoryStore()))
        return
    client: RedisClient = request.getfixturevalue("client")

    async def main() -> None:
        try:
            await body(RedisStore(client))
        finally:
            await client.close()

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["memory", "redis"])
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_conformance(request: pytest.FixtureRequest, kind: str, case: Case) -> None:
    run_with(request, kind, case)


def test_random_trace_matches_memory_store(client: RedisClient) -> None:
    """The same random sequence of reserve/settle/state on both stores gives the same answers."""
    rng = random.Random(7)
    limits = [TOKENS_DAY, TPM, USD_MONTH, RPM]

    async def main() -> None:
        memory, shared = MemoryStore(), RedisStore(client, prefix="trace:")
        ids: list[str] = []
        now = NOW
        for step in range(400):
            now += rng.choice([0.0, 0.5, 7.0, 30.0])
            scope = rng.choice(["acme", "beta"])
            if rng.random() < 0.55 or not ids:
                rid = rng.choice([*ids[-3:], f"q{step}"]) if ids else f"q{step}"
                ids.append(rid)
                ask: dict[Unit, float] = {
                    "tokens": rng.randint(0, 300), "usd": rng.randint(0, 40) / 128, "requests": rng.choice([0, 1]),
                }  # fmt: skip
                picked = rng.sample(limits, rng.randint(0, len(limits)))
                expected = await memory.reserve(scope, rid, picked, ask, now)
                assert await shared.reserve(scope, rid, picked, ask, now) == expected, step
            else:
                rid = rng.choice(ids)
                actual: dict[Unit, float] = {"tokens": rng.randint(0, 300), "usd": rng.randint(0, 40) / 128}
                assert await memory.settle(rid, actual) == await shared.settle(rid, actual), step
            mine, theirs = await memory.state(scope, limits, now), await shared.state(scope, limits, now)
            for a, b in zip(mine, theirs, strict=True):
                assert (a.spec, a.span) == (b.spec, b.span)
                assert (a.reserved, a.spent) == (pytest.approx(b.reserved), pytest.approx(b.spent)), step
        await client.close()

    asyncio.run(main())


# ── races: one budget, many concurrent requests, one or two gateway processes ──────────────────────────────

BUDGET = LimitSpec("budget[0]", "tokens", "day", 10_000)


async def race(stores: Sequence[RedisStore], settle_inline: bool, seed: int) -> None:
    rng = random.Random(seed)
    observed: list[float] = []
    done = asyncio.Event()

    async def observe() -> None:
        while not done.is_set():
            (state,) = await stores[0].state("acme", [BUDGET], NOW)
            observed.append(state.reserved + state.spent)
            await asyncio.sleep(0)

    actuals = {f"r{i}": float(rng.randint(0, 100)) for i in range(500)}

    async def one_request(i: int) -> bool:
        rid = f"r{i}"
        store = stores[i % len(stores)]
        admission = await store.reserve("acme", rid, [BUDGET], {"tokens": 100}, NOW)
        if admission.admitted and settle_inline:
            await asyncio.sleep(rng.random() / 100)
            assert await store.settle(rid, {"tokens": actuals[rid]})
        return admission.admitted

    watcher = asyncio.create_task(observe())
    try:
        results = await asyncio.gather(*(one_request(i) for i in range(500)))
        admitted = [f"r{i}" for i, ok in enumerate(results) if ok]
        if settle_inline:
            assert len(admitted) >= 100  # settled below the worst case: the budget let more through
        else:
            assert len(admitted) == 100  # 100 x 100 = 10,000: exactly full, never over
            (state,) = await stores[0].state("acme", [BUDGET], NOW)
            assert (state.reserved, state.spent) == (10_000, 0)
            settles = await asyncio.gather(
                *(stores[i % len(stores)].settle(rid, {"tokens": actuals[rid]}) for i, rid in enumerate(admitted))
            )
            assert all(settles)
    finally:
        done.set()
        await watcher
    assert observed and max(observed) <= 10_000
    (state,) = await stores[0].state("acme", [BUDGET], NOW)
    assert state.reserved == 0
    assert state.spent == sum(actuals[rid] for rid in admitted) <= 10_000
    for store in stores:  # every process reads the same numbers
        assert await store.state("acme", [BUDGET], NOW) == [state]


@pytest.mark.parametrize("settle_inline", [False, True], ids=["reserve-then-settle", "settle-inline"])
def test_race_one_process(client: RedisClient, settle_inline: bool) -> None:
    async def main() -> None:
        try:
            await race([RedisStore(client)], settle_inline, seed=1)
        finally:
            await client.close()

    asyncio.run(main())


@pytest.mark.parametrize("settle_inline", [False, True], ids=["reserve-then-settle", "settle-inline"])
def test_race_two_processes_share_one_limit(
    redis_server: RedisServer, redis_client: aredis.Redis, settle_inline: bool
) -> None:
    """Two clients with their own connections (two gateway processes) against one server: one limit, not two."""

    async def main() -> None:
        first, second = RedisClient(redis_server.url), RedisClient(redis_server.url)
        try:
            await race([RedisStore(first), RedisStore(second)], settle_inline, seed=2)
        finally:
            await first.close()
            await second.close()
            await redis_client.aclose()

    asyncio.run(main())


# ── GuardedStore: outages ─────────────────────────────────────────────────────────────────────────────────

TIMEOUT_S = 0.25
SLACK_S = 0.25  # scheduling slack on a loaded 2-core machine: these tests prove bounds, not speed


async def timed(call: Awaitable[Any]) -> tuple[float, Any]:
    start = time.monotonic()
    try:
        result = await call
    except StoreUnavailable as exc:
        result = exc
    return time.monotonic() - start, result


def state_logs(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.state" and r.levelno == level]


@pytest.mark.parametrize("on_error", ["fail_closed", "fail_open"])
@pytest.mark.parametrize("outage", ["stopped", "black_hole"])
def test_outage_answers_within_the_deadline(outage: str, on_error: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.state")
    server = RedisServer().start()
    hole = BlackHole()
    timings: list[float] = []

    async def main() -> None:
        client = RedisClient(hole.url if outage == "black_hole" else server.url)
        guarded = GuardedStore(RedisStore(client), on_error, timeout_s=TIMEOUT_S, probe_interval_s=0)
        if outage == "stopped":
            assert (await guarded.reserve("acme", "warm", [TOKENS_DAY], {"tokens": 1}, NOW)).admitted
            server.stop()
        assert guarded.mode == "primary"
        for i in range(2):
            elapsed, result = await timed(guarded.reserve("acme", f"r{i}", [TOKENS_DAY], {"tokens": 10}, NOW))
            timings.append(elapsed)
            if on_error == "fail_closed":
                assert isinstance(result, StoreUnavailable)
                assert "shared state store is unreachable" in str(result)
            else:
                assert result == Admission(True, degraded=True)
        elapsed, settled = await timed(guarded.settle("r0" if on_error == "fail_open" else "warm", {"tokens": 5}))
        timings.append(elapsed)
        assert settled is True  # kept (owed or replayed later), never raised
        elapsed, states = await timed(guarded.state("acme", [TOKENS_DAY], NOW))
        timings.append(elapsed)
        if on_error == "fail_closed":
            assert isinstance(states, StoreUnavailable)
            assert guarded.mode == "degraded_closed"
        else:
            assert [(s.reserved, s.spent) for s in states] == [(10, 5)]  # the local books: r1 held, r0 owed
            assert guarded.mode == "degraded_open"
        assert guarded.errors == 4
        assert guarded.pending == (3 if on_error == "fail_closed" else 1)  # releases + replay, or owed spend
        # with the default probe interval, calls after a failure do not wait for the primary again
        quick = GuardedStore(RedisStore(client), on_error, timeout_s=TIMEOUT_S)
        await timed(quick.state("acme", [TOKENS_DAY], NOW))
        elapsed, _ = await timed(quick.reserve("acme", "fast", [TOKENS_DAY], {"tokens": 1}, NOW))
        assert elapsed < TIMEOUT_S  # it did not wait for the primary again
        await client.close()

    try:
        asyncio.run(main())
    finally:
        hole.close()
        server.close()
    assert max(timings) <= TIMEOUT_S + SLACK_S, timings
    assert len(state_logs(caplog, logging.WARNING)) == 2  # one per store entering its degraded mode
    print(f"{outage}/{on_error}: " + ", ".join(f"{t * 1000:.0f} ms" for t in timings))  # shown with -s


def test_fail_open_reconciles_owed_spend(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.state")
    server = RedisServer().start()
    limits = [TOKENS_DAY, USD_MONTH]

    async def main() -> None:
        client = RedisClient(server.url)
        primary = RedisStore(client)
        guarded = GuardedStore(primary, "fail_open", timeout_s=TIMEOUT_S, probe_interval_s=0)
        spent: dict[Unit, float] = {"tokens": 0, "usd": 0}

        def book(actual: Mapping[Unit, float]) -> Mapping[Unit, float]:
            for unit, amount in actual.items():
                spent[unit] += amount
            return actual

        # before the outage: one settled request, one still in flight
        assert await guarded.reserve("acme", "before", limits, {"tokens": 100, "usd": 0.5}, NOW) == Admission(True)
        assert await guarded.settle("before", book({"tokens": 80, "usd": 0.25}))
        assert (await guarded.reserve("acme", "inflight", limits, {"tokens": 100, "usd": 0.25}, NOW)).admitted

        server.stop(persist=True)
        assert await guarded.settle("inflight", book({"tokens": 60, "usd": 0.125}))  # kept for replay
        for i in range(4):  # admitted without the shared store, settled locally
            assert await guarded.reserve("acme", f"down{i}", limits, {"tokens": 500, "usd": 0.5}, NOW) == Admission(
                True, degraded=True
            )
            assert await guarded.settle(f"down{i}", book({"tokens": 100 + i, "usd": 0.0625}))
        assert await guarded.settle("down0", {"tokens": 1}) is False  # already settled (owed)
        assert await guarded.reserve("acme", "late", limits, {"tokens": 10, "usd": 0.5}, NOW) == Admission(
            True, degraded=True
        )
        assert guarded.mode == "degraded_open"
        assert guarded.pending == 5
        assert await guarded.reconcile() is False  # still down: nothing lost
        assert guarded.pending == 5

        server.start()
        assert await guarded.reconcile() is True
        assert guarded.mode == "primary"
        assert guarded.pending == 0
        assert await guarded.settle("late", book({"tokens": 7, "usd": 0.03125}))  # straight to the primary
        states = await primary.state("acme", limits, NOW)
        assert [(s.reserved, s.spent) for s in states] == [(0, spent["tokens"]), (0, spent["usd"])]
        assert spent == {"tokens": 80 + 60 + 406 + 7, "usd": 0.25 + 0.125 + 0.25 + 0.03125}
        # pushing the same owed request again (a retry after a lost reply) changes nothing
        assert await primary.record_spend("acme", "down1", limits, {"tokens": 101, "usd": 0.0625}, NOW) is False
        assert await primary.state("acme", limits, NOW) == states
        await client.close()

    try:
        asyncio.run(main())
    finally:
        server.close()
    assert len(state_logs(caplog, logging.WARNING)) == 1
    assert len(state_logs(caplog, logging.INFO)) == 1


def test_a_long_fail_open_outage_owes_its_spend_per_tenant_and_window_not_per_request() -> None:
    """Spend admitted while Redis is away (fail_open) waits in memory for Redis to return: summed per tenant and
    window, so an hour of outage at hundreds of requests a second does not keep a record (~0.5 KB) per request;
    only a request whose reservation was sent (it may have landed) is owed under its own id. All of it reaches
    Redis once, when Redis returns."""
    server = RedisServer().start()
    limits = [TOKENS_DAY, TPM]

    async def main() -> None:
        client = RedisClient(server.url)
        primary = RedisStore(client)
        guarded = GuardedStore(primary, "fail_open", timeout_s=TIMEOUT_S, probe_interval_s=60)  # one probe only
        server.stop()
        spent: dict[tuple[str, float], float] = {}
        for i in range(1000):  # two tenants, two minutes
            scope, now = ("acme", "zeta")[i % 2], NOW + 60 * (i % 4 // 2)
            assert (await guarded.reserve(scope, f"r{i}", limits, {"tokens": 50}, now)).degraded
            assert await guarded.settle(f"r{i}", {"tokens": i % 7})
            spent[scope, now] = spent.get((scope, now), 0) + i % 7
        assert guarded.pending == 1 + 4  # r0 (its reservation was sent), and one sum per tenant and minute
        assert await guarded.reconcile() is False  # still down: nothing lost
        assert guarded.pending == 5
        server.start()
        assert await guarded.reconcile() is True
        assert guarded.pending == 0
        for (scope, now), tokens in spent.items():
            day, minute = await primary.state(scope, limits, now)
            assert (minute.reserved, minute.spent) == (0, tokens)
            assert day.spent == spent[scope, NOW] + spent[scope, NOW + 60]
        await client.close()

    try:
        asyncio.run(main())
    finally:
        server.close()


def test_recovery_reconciles_in_the_background() -> None:
    """The first primary call that succeeds after an outage starts the reconciliation by itself."""
    server = RedisServer().start()

    async def main() -> None:
        client = RedisClient(server.url)
        primary = RedisStore(client)
        guarded = GuardedStore(primary, "fail_open", timeout_s=TIMEOUT_S, probe_interval_s=0)
        server.stop()
        assert (await guarded.reserve("acme", "down", [TOKENS_DAY], {"tokens": 50}, NOW)).degraded
        assert await guarded.settle("down", {"tokens": 42})
        server.start()
        assert (await guarded.reserve("acme", "up", [TOKENS_DAY], {"tokens": 50}, NOW)) == Admission(True)
        await guarded.aclose()
        assert guarded.pending == 0
        assert (await one(primary, TOKENS_DAY)).spent == 42
        await client.close()

    try:
        asyncio.run(main())
    finally:
        server.close()


@pytest.mark.parametrize("on_error", ["fail_closed", "fail_open"])
def test_reservation_that_landed_after_the_deadline_is_not_leaked(client: RedisClient, on_error: Any) -> None:
    async def main() -> None:
        primary = RedisStore(client)
        guarded = GuardedStore(SlowAfterReserve(primary, 1.0), on_error, timeout_s=0.1, probe_interval_s=0)
        elapsed, admission = await timed(guarded.reserve("acme", "r1", [TOKENS_DAY], {"tokens": 300}, NOW))
        assert elapsed <= 0.1 + SLACK_S
        assert (await one(primary, TOKENS_DAY)).reserved == 300  # it did land
        if on_error == "fail_closed":
            assert isinstance(admission, StoreUnavailable)  # refused: the landed reservation is released
        else:
            assert admission == Admission(True, degraded=True)
            assert await guarded.settle("r1", {"tokens": 120})  # settles the landed reservation
        assert await guarded.reconcile() is True
        state = await one(primary, TOKENS_DAY)
        assert (state.reserved, state.spent) == (0, 0 if on_error == "fail_closed" else 120)
        await client.close()

    asyncio.run(main())


def test_counters_and_records_expire(redis_client: aredis.Redis, client: RedisClient) -> None:
    async def main() -> None:
        store = RedisStore(client, prefix="x:")
        now = time.time()
        assert (await store.reserve("acme", "r1", [RPM, USD_MONTH], {"requests": 1, "usd": 0.5}, now)).admitted
        record_ttl = await redis_client.ttl("x:resv:r1")
        assert 2 * 86400 - 5 <= record_ttl <= 2 * 86400
        rpm_key = f"x:acme:requests:minute:{window_span('minute', now).start}"
        usd_key = f"x:acme:usd:month:{window_span('month', now).start}"
        assert sorted(k.decode() for k in await redis_client.keys("x:acme:*")) == sorted([rpm_key, usd_key])
        assert abs(await redis_client.ttl(usd_key) - (window_span("month", now).end + 3600 - now)) <= 2
        assert abs(await redis_client.ttl(rpm_key) - (window_span("minute", now).end + 3600 - now)) <= 2
        await redis_client.delete(rpm_key)  # as if the counter expired before a very late settlement
        assert await store.settle("r1", {"requests": 1, "usd": 0.25})
        assert await redis_client.exists("x:resv:r1") == 0
        assert 3590 <= await redis_client.ttl(rpm_key) <= 3600  # recreated: it gets the margin, not forever
        assert abs(await redis_client.ttl(usd_key) - (window_span("month", now).end + 3600 - now)) <= 2
        await client.close()
        await redis_client.aclose()

    asyncio.run(main())


# ── upgrades: counters named by the limit's place in the config, before they were named by unit and window ──


def test_a_start_takes_over_what_the_old_counter_names_spent(client: RedisClient, redis_client: aredis.Redis) -> None:
    """Counters were named `{scope}:{limit name}:{unit}:{window}:{start}`; without taking those over, the first
    start of this version was a fresh hour, day and month for every tenant. TPM and a tokens-per-minute budget
    share one counter now: each old one counted the same tokens, so the larger is taken, not their sum."""
    tokens_minute = LimitSpec("budget[2]", "tokens", "minute", 5000)
    limits = [TOKENS_DAY, USD_MONTH, TPM, tokens_minute]
    day, month, minute = (window_span(w, NOW).start for w in ("day", "month", "minute"))

    async def scenario() -> tuple[int, int, int, list[float]]:
        await redis_client.hset(f"gw:acme:budget[0]:tokens:day:{day}", mapping={"spent": "700", "reserved": "50"})
        await redis_client.hset(f"gw:acme:budget[1]:usd:month:{month}", "spent", "0.25")
        await redis_client.hset(f"gw:acme:tpm:tokens:minute:{minute}", "spent", "120")
        await redis_client.hset(f"gw:acme:budget[2]:tokens:minute:{minute}", "spent", "90")
        await redis_client.hset(f"gw:other:budget[0]:tokens:day:{day}", "spent", "999")  # another tenant's
        store = RedisStore(client)
        try:
            first = await store.adopt_old_counters([("acme", limits)], NOW)
            again = await store.adopt_old_counters([("acme", limits)], NOW)  # a second worker, or a restart
            await redis_client.hincrbyfloat(f"gw:acme:budget[0]:tokens:day:{day}", "spent", 30)  # an old worker
            later = await store.adopt_old_counters([("acme", limits)], NOW)  # serving during a rolling upgrade
            spent = [state.spent for state in await store.state("acme", limits, NOW)]
            denied = await store.reserve("acme", "r1", [TOKENS_DAY], {"tokens": 271}, NOW)
        finally:
            await client.close()
            await redis_client.aclose()
        assert not denied.admitted  # 730 spent under the old name: 271 more is over the day's 1,000
        return first, again, later, spent

    first, again, later, spent = asyncio.run(scenario())
    assert (first, again, later) == (3, 0, 1)
    assert spent == [730.0, 0.25, 120.0, 120.0]  # never the old counters' reserved: their requests settle there


def test_a_start_with_no_old_counters_runs_no_script_per_counter(
    client: RedisClient, redis_client: aredis.Redis
) -> None:
    """Every start looks for the old names (old workers may still write them during a rolling upgrade), but where
    none is left, as after any upgrade once their windows ended, that is a few EXISTS for all tenants, not one
    script per tenant and counter (3,000 tenants took ~0.9 s of every start). A tenant that does have one, among
    many that do not, still gets it taken over."""
    limits = [TOKENS_DAY, USD_MONTH, RPM, TPM]
    tenants = [(f"t{i}", limits) for i in range(1000)]
    day = window_span("day", NOW).start

    async def commands_run() -> dict[str, int]:
        stats = await redis_client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    async def scenario() -> tuple[int, dict[str, int], int, float]:
        store = RedisStore(client)
        try:
            await redis_client.config_resetstat()
            nothing = await store.adopt_old_counters(tenants, NOW)
            counted = await commands_run()
            await redis_client.hset(f"gw:t777:budget[0]:tokens:day:{day}", "spent", "400")
            adopted = await store.adopt_old_counters(tenants, NOW)
            (state,) = await store.state("t777", [TOKENS_DAY], NOW)
        finally:
            await client.close()
            await redis_client.aclose()
        return nothing, counted, adopted, state.spent

    nothing, counted, adopted, spent = asyncio.run(scenario())
    assert nothing == 0
    assert counted.get("evalsha", 0) == 0 and counted.get("eval", 0) == 0, counted
    assert sum(counted.values()) <= 20, counted  # (INFO and CONFIG RESETSTAT included)
    assert (adopted, spent) == (1, 400.0)
