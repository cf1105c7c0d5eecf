"""The shared reservation store: `budgets.MemoryStore`'s semantics in Redis, for several gateway processes.

    reserve  one Lua script: for every limit, reserved + spent + asked <= limit?  all yes ─► HINCRBYFLOAT
             reserved on every counter and SET the reservation record {prefix}resv:{request_id} (EX 2 days)
    settle   one Lua script: GET + DEL the record (absent ─► nothing to do, False), then per counter it names
             reserved -= asked (floored at 0) and spent += actual
    state    HMGET of every counter, in one pipelined round trip

Calls go through `redis_client.RedisClient` (pipelined, a few connections, EVALSHA with a NOSCRIPT fallback).

Counters are hashes {prefix}{counter_key(...)} with fields `reserved` and `spent`, expiring an hour after
their window ends (a TTL counted from the caller's `now`, so clock skew between gateway and Redis does not
matter; a counter that a late settlement recreates gets just the margin). Amounts travel as `repr(float)`
strings, so no precision is lost on the way to Lua; Redis then sums them in long double, so a total can
differ from the in-process one in the last ulp.

`GuardedStore` wraps a store with a deadline per call and a policy for when the shared store is down:
`fail_closed` refuses (`StoreUnavailable`), `fail_open` admits and keeps the books locally, then pushes
what it owes once the store answers again (`record_spend`, idempotent per request id).

Redis Cluster: the settle script reaches counters named in the record, not in KEYS, so this targets a
single Redis (or a primary with replicas), not a sharded cluster.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import orjson

from policies.budgets import (
    Admission,
    LimitSpec,
    LimitState,
    ReservationStore,
    Unit,
    counter_key,
    denial,
    held_to,
    window_span,
)
from policies.redis_client import RedisClient
from policies.resp import Arg, RedisError, Script

logger = logging.getLogger("gateway.state")

_UNITS: tuple[Unit, ...] = ("tokens", "usd", "requests")
RESERVATION_TTL_S = 2 * 86400  # a crashed request's reservation record does not live forever
COUNTER_MARGIN_S = 3600  # counters outlive their window by this much
ADOPT_BATCH = 256  # counters whose old names one EXISTS asks about, at every start

# Settles the reservation whose record is under `record_key` with ARGV[1..3] = actual tokens, usd, requests.
# Record: JSON list of [counter key, unit, -asked]. Returns 1, or 0 when there was no record.
_SETTLE_FUNCTION = f"""
local function settle(record_key)
  local record = redis.call('GET', record_key)
  if not record then return 0 end
  redis.call('DEL', record_key)
  local actual = {{tokens = ARGV[1], usd = ARGV[2], requests = ARGV[3]}}
  for _, held in ipairs(cjson.decode(record)) do
    local key = held[1]
    if tonumber(redis.call('HINCRBYFLOAT', key, 'reserved', held[3])) < 0 then
      redis.call('HSET', key, 'reserved', '0')
    end
    redis.call('HINCRBYFLOAT', key, 'spent', actual[held[2]] or '0')
    if redis.call('TTL', key) == -1 then redis.call('EXPIRE', key, {COUNTER_MARGIN_S}) end
  end
  return 1
end
"""

# KEYS[1] reservation record, KEYS[2..n+1] counters in limit order.
# ARGV[1] record JSON, ARGV[2] record TTL; for counter i: ARGV[3i] asked, ARGV[3i+1] limit, ARGV[3i+2] counter TTL;
# ARGV[3n+3] one character per counter, "1" where what is reserved is as good as spent (requests).
# Returns 0 when admitted (or already holding a reservation), else {the 1-based index of the first limit whose
# spend leaves no room for it, or failing that the negated index of the first that reservations fill (`held`),
# what that limit has left as a string (an integer reply would truncate it)}; a denial writes nothing.
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = #KEYS - 1
local held, held_left = 0, 0
for i = 1, n do
  local amount = tonumber(ARGV[3 * i])
  if amount > 0 then
    local v = redis.call('HMGET', KEYS[i + 1], 'reserved', 'spent')
    local reserved = tonumber(v[1]) or 0
    local spent = tonumber(v[2]) or 0
    local limit = tonumber(ARGV[3 * i + 1])
    if reserved + spent + amount > limit then
      local left = limit - reserved - spent
      if spent + amount > limit or string.byte(ARGV[3 * n + 3], i) == 49 then return {i, tostring(left)} end
      if held == 0 then held, held_left = -i, left end
    end
  end
end
if held ~= 0 then return {held, tostring(held_left)} end
for i = 1, n do
  redis.call('HINCRBYFLOAT', KEYS[i + 1], 'reserved', ARGV[3 * i])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[3 * i + 2])
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 0
"""

# KEYS[1] reservation record. ARGV[1..3] actual tokens, usd, requests.
_SETTLE = _SETTLE_FUNCTION + "\nreturn settle(KEYS[1])\n"

# Spend booked without going through reserve (a request admitted while the store was down), once per request id.
# KEYS[1] reservation record, KEYS[2] done marker, KEYS[3..] counters. ARGV[1..3] actual tokens, usd, requests,
# ARGV[4] marker TTL; for counter i (KEYS[i + 2]): ARGV[3 + 2i] unit, ARGV[4 + 2i] TTL for a counter this creates.
# If a reservation for the request did land after all (a reserve that timed out on our side), it is settled.
_RECORD_SPEND = (
    _SETTLE_FUNCTION
    + """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[4])
if settle(KEYS[1]) == 1 then return 1 end
local actual = {tokens = ARGV[1], usd = ARGV[2], requests = ARGV[3]}
for i = 1, #KEYS - 2 do
  redis.call('HINCRBYFLOAT', KEYS[i + 2], 'spent', actual[ARGV[3 + 2 * i]] or '0')
  if redis.call('TTL', KEYS[i + 2]) == -1 then redis.call('EXPIRE', KEYS[i + 2], ARGV[4 + 2 * i]) end
end
return 1
"""
)


# Gives back part of a reservation that stays held: per counter it names, reserved -= min(unused of its unit,
# what it holds), and the record keeps the rest for its settlement. KEYS[1] reservation record. ARGV[1..3] unused
# tokens, usd, requests. Returns 1, or 0 when there was no record (settled already).
_RELEASE = """
local record = redis.call('GET', KEYS[1])
if not record then return 0 end
local unused = {tokens = tonumber(ARGV[1]), usd = tonumber(ARGV[2]), requests = tonumber(ARGV[3])}
local held = cjson.decode(record)
for _, h in ipairs(held) do
  local asked = -tonumber(h[3])
  local given = math.min(math.max(unused[h[2]] or 0, 0), asked)
  if given > 0 then
    if tonumber(redis.call('HINCRBYFLOAT', h[1], 'reserved', string.format('%.17g', -given))) < 0 then
      redis.call('HSET', h[1], 'reserved', '0')
    end
    h[3] = string.format('%.17g', -(asked - given))
  end
end
local ttl = redis.call('PTTL', KEYS[1])  -- (not SET KEEPTTL: Redis 6 and later only)
if ttl > 0 then
  redis.call('SET', KEYS[1], cjson.encode(held), 'PX', ttl)
else
  redis.call('SET', KEYS[1], cjson.encode(held))
end
return 1
"""

# Counters were named by their limit's place in the config (`{scope}:budget[0]:tokens:day:{start}`) before they
# were named by unit and window; a gateway that starts takes over what the current windows spent under the old
# names. KEYS[1] a counter, KEYS[2..] the old counters of the limits that share it (each counted the same spend:
# the largest is taken). ARGV[1] the counter's TTL. The field `adopted` keeps what was taken over, so a second
# start adds only what the old names gained since (old workers still serving during a rolling upgrade).
_ADOPT = """
local before = tonumber(redis.call('HGET', KEYS[1], 'adopted')) or 0
local most, most_raw = 0, nil
for i = 2, #KEYS do
  local raw = redis.call('HGET', KEYS[i], 'spent')
  local spent = tonumber(raw) or 0
  if spent > most then most, most_raw = spent, raw end
end
if most <= before then return 0 end
redis.call('HINCRBYFLOAT', KEYS[1], 'spent', string.format('%.17g', most - before))
redis.call('HSET', KEYS[1], 'adopted', most_raw)
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


_ADOPT_SCRIPT = Script(_ADOPT)
_RESERVE_SCRIPT = Script(_RESERVE)
_RELEASE_SCRIPT = Script(_RELEASE)
_SETTLE_SCRIPT = Script(_SETTLE)
_RECORD_SPEND_SCRIPT = Script(_RECORD_SPEND)


def _num(value: float) -> str:
    return repr(float(value))


def _actual_args(actual: Mapping[Unit, float]) -> list[str]:
    return [_num(actual.get(unit, 0.0)) for unit in _UNITS]


def _field(raw: object) -> float:
    if raw is None:
        return 0.0
    if isinstance(raw, bytes | str):
        return float(raw)
    raise TypeError(f"unexpected counter value {raw!r}")


class RedisStore:
    """`ReservationStore` on one Redis shared by every gateway process. Each operation is one atomic script."""

    settles_in_process = False

    def __init__(self, client: RedisClient, prefix: str = "gw:") -> None:
        self.client = client
        self.prefix = prefix

    def _record_key(self, request_id: str) -> str:
        return f"{self.prefix}resv:{request_id}"

    async def adopt_old_counters(self, scopes: Iterable[tuple[str, Sequence[LimitSpec]]], now: float) -> int:
        """Takes over what the current windows spent under the counters' old names (by the limit's place in the
        config, before this version); the number of counters that gained some. Every start looks (old workers may
        still write the old names during a rolling upgrade), but cheaply: one EXISTS per `ADOPT_BATCH` counters,
        pipelined, and the scripts only for the batches where some old name is left."""
        counters = [counter for scope, limits in scopes for counter in self._old_names(scope, limits, now)]
        batches = [counters[i : i + ADOPT_BATCH] for i in range(0, len(counters), ADOPT_BATCH)]
        found = (
            await self.client.pipeline(
                [("EXISTS", *(old for _, olds, _ in batch for old in olds)) for batch in batches]
            )
            if batches
            else []
        )
        left = [counter for batch, exists in zip(batches, found, strict=True) if int(exists) for counter in batch]
        if not left:
            return 0
        adopting: list[Sequence[Arg]] = [("SCRIPT", "LOAD", _ADOPT)]  # (in the pipeline: no NOSCRIPT after a restart)
        adopting += [("EVALSHA", _ADOPT_SCRIPT.sha, 1 + len(olds), key, *olds, ttl) for key, olds, ttl in left]
        replies = await self.client.pipeline(adopting)
        return sum(int(done) for done in replies[1:])

    def _old_names(self, scope: str, limits: Sequence[LimitSpec], now: float) -> list[tuple[str, list[str], int]]:
        """Each counter `limits` use now, the old names of the limits that share it, and the counter's TTL."""
        sharing: dict[str, list[LimitSpec]] = {}
        for spec in limits:
            sharing.setdefault(counter_key(scope, spec, window_span(spec.window, now)), []).append(spec)
        counters = []
        for key, specs in sharing.items():
            span = window_span(specs[0].window, now)
            old = [f"{self.prefix}{scope}:{s.former_name or s.name}:{s.unit}:{s.window}:{span.start}" for s in specs]
            counters.append((self.prefix + key, old, math.ceil(span.end - now) + COUNTER_MARGIN_S))
        return counters

    async def reserve(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], asked: Mapping[Unit, float], now: float
    ) -> Admission:
        keys = [self._record_key(request_id)]
        args: list[bytes | str | int] = []
        record: list[list[str]] = []
        counters = held_to(scope, limits, now)  # a counter two limits share is reserved once
        spent_when_reserved = ""
        for key, (spec, span) in counters.items():
            amount = float(asked.get(spec.unit, 0.0))
            keys.append(self.prefix + key)
            args += [_num(amount), _num(spec.limit), math.ceil(span.end - now) + COUNTER_MARGIN_S]
            record.append([self.prefix + key, spec.unit, _num(-amount)])
            spent_when_reserved += "1" if spec.unit == "requests" else "0"
        args[0:0] = [orjson.dumps(record), RESERVATION_TTL_S]  # compact UTF-8 JSON, for cjson.decode
        args.append(spent_when_reserved)
        answer = await self.client.run(_RESERVE_SCRIPT, keys, args)
        if answer == 0:
            return Admission(True)
        denied, remaining = int(answer[0]), float(answer[1])
        spec, span = list(counters.values())[abs(denied) - 1]
        return denial(spec, span, now, remaining, held=denied < 0)

    async def settle(self, request_id: str, actual: Mapping[Unit, float]) -> bool:
        return int(await self.client.run(_SETTLE_SCRIPT, [self._record_key(request_id)], _actual_args(actual))) == 1

    async def release(self, request_id: str, unused: Mapping[Unit, float]) -> bool:
        return int(await self.client.run(_RELEASE_SCRIPT, [self._record_key(request_id)], _actual_args(unused))) == 1

    async def record_spend(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], actual: Mapping[Unit, float], now: float
    ) -> bool:
        """Books `actual` as spent in the windows containing `now`, without a reservation: for requests admitted
        while the store was unreachable. Idempotent per request id (False the second time); a reservation under
        that id, if one landed after all, is settled instead of adding the spend beside it."""
        keys = [self._record_key(request_id), f"{self.prefix}owed:{request_id}"]
        args: list[str | int] = [*_actual_args(actual), RESERVATION_TTL_S]
        for key, (spec, span) in held_to(scope, limits, now).items():  # a counter two limits share is charged once
            keys.append(self.prefix + key)
            args += [spec.unit, math.ceil(span.end - now) + COUNTER_MARGIN_S]
        return int(await self.client.run(_RECORD_SPEND_SCRIPT, keys, args)) == 1

    async def state(self, scope: str, limits: Sequence[LimitSpec], now: float) -> list[LimitState]:
        spans = [window_span(spec.window, now) for spec in limits]
        rows = await self.client.pipeline(
            [
                ("HMGET", self.prefix + counter_key(scope, spec, span), "reserved", "spent")
                for spec, span in zip(limits, spans, strict=True)
            ]
        )
        return [
            LimitState(spec, span, _field(row[0]), _field(row[1]))
            for spec, span, row in zip(limits, spans, rows, strict=True)
        ]

    async def ping(self) -> None:
        await self.client.execute("PING")


class SpendRecordingStore(ReservationStore, Protocol):
    """What `GuardedStore` needs from its primary: a reservation store that can also book owed spend, and
    answer a ping (readiness)."""

    async def ping(self) -> None: ...

    async def record_spend(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], actual: Mapping[Unit, float], now: float
    ) -> bool: ...


class StoreUnavailable(Exception):
    """The shared state store did not answer in time and the policy is fail_closed."""


Mode = Literal["primary", "degraded_open", "degraded_closed"]
DeadlineFactory = Callable[[float], AbstractAsyncContextManager[Any]]  # asyncio.timeout, or a cheaper equivalent
OnError = Literal["fail_closed", "fail_open"]
StateSource = Literal["shared", "local"]  # the primary's counters, or only what this process kept while it was away
T = TypeVar("T")


class _PrimaryDown(Exception):
    pass


@dataclass(slots=True)
class _Held:
    """A request admitted (fail_open) or owed for without the primary."""

    scope: str
    limits: tuple[LimitSpec, ...]
    amounts: dict[Unit, float]  # asked while held, actual once owed
    now: float
    sent: bool = False  # its reservation went to the primary and may have landed: owed under its own id

    def counts_in(self, key: str) -> bool:
        return any(counter_key(self.scope, s, window_span(s.window, self.now)) == key for s in self.limits)

    def windows(self) -> tuple[str, tuple[LimitSpec, ...], tuple[float, ...]]:
        """What spend booked at `now` adds to: the same counters for every request with the same key."""
        return self.scope, self.limits, tuple(window_span(s.window, self.now).start for s in self.limits)


class GuardedStore:
    """Puts a deadline on every call to `primary` and decides what happens when it is missed or fails.

    fail_closed: reserve/state raise `StoreUnavailable`. fail_open: reserve admits (`degraded=True`) and the
    request is settled locally; its spend is owed to the primary and pushed on recovery, summed per tenant and
    window (a long outage keeps one sum per tenant and minute, not a record per request), except for a request
    whose reservation or push was sent and may have landed, owed under its own id. In both modes a
    settlement that cannot reach the primary is kept and replayed (settle is idempotent by request id), so
    settle never raises. While degraded, at most one call per `probe_interval_s` tries the primary; the
    others take the degraded path at once instead of each waiting out the deadline.
    """

    settles_in_process = False

    def __init__(
        self,
        primary: SpendRecordingStore,
        on_error: OnError,
        timeout_s: float = 0.25,
        probe_interval_s: float = 1.0,
        deadline: DeadlineFactory = asyncio.timeout,
    ) -> None:
        self.primary = primary
        self.deadline = deadline
        self.on_error: OnError = on_error
        self.timeout_s = timeout_s
        self.probe_interval_s = probe_interval_s
        self.errors = 0  # failed or timed-out primary calls, for metrics
        self.last_error: str | None = None
        self._degraded = False
        self._next_probe = 0.0
        self._local: dict[str, _Held] = {}  # admitted without the primary, not settled yet
        self._owed: dict[str, _Held] = {}  # settled locally, spend not yet in the primary, by the id it is pushed as
        self._unsent: dict[tuple[str, tuple[LimitSpec, ...], tuple[float, ...]], _Held] = {}  # summed, never sent
        self._sums = itertools.count(1)
        self._sum_prefix = f"owed-{os.getpid()}-{secrets.token_hex(4)}-"  # the ids sums are pushed as
        self._retry: dict[str, dict[Unit, float]] = {}  # settlements to replay on the primary
        self._reconcile_lock = asyncio.Lock()
        self._reconciling = False
        self._reconcile_task: asyncio.Task[bool] | None = None

    @property
    def mode(self) -> Mode:
        if not self._degraded:
            return "primary"
        return "degraded_open" if self.on_error == "fail_open" else "degraded_closed"

    @property
    def pending(self) -> int:
        """Settlements (owed spend or replays) not yet applied to the primary."""
        return len(self._owed) + len(self._retry) + len(self._unsent)

    async def reserve(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], asked: Mapping[Unit, float], now: float
    ) -> Admission:
        if request_id in self._local:
            return Admission(True, degraded=True)
        attempted = self._may_try_primary()
        if attempted:
            try:
                return await self._call(self.primary.reserve(scope, request_id, limits, asked, now))
            except _PrimaryDown:
                pass
        if self.on_error == "fail_closed":
            if attempted:  # the reservation may have landed before the deadline hit: release it later
                self._retry.setdefault(request_id, {})
            raise self._unavailable()
        self._local[request_id] = _Held(scope, tuple(limits), dict(asked), now, sent=attempted)
        return Admission(True, degraded=True)

    async def settle(self, request_id: str, actual: Mapping[Unit, float]) -> bool:
        held = self._local.pop(request_id, None)
        if held is not None:
            owed = _Held(held.scope, held.limits, dict(actual), held.now)
            if self._may_try_primary():
                try:
                    await self._call(self._push(request_id, owed))
                    return True
                except _PrimaryDown:
                    owed.sent = True
            if held.sent or owed.sent:  # it may have landed: pushed again under the same id, idempotently
                self._owed[request_id] = owed
            else:
                self._add_unsent(owed)
            return True
        if request_id in self._owed or request_id in self._retry:
            return False
        if self._may_try_primary():
            try:
                return await self._call(self.primary.settle(request_id, actual))
            except _PrimaryDown:
                pass
        self._retry[request_id] = dict(actual)
        return True

    async def release(self, request_id: str, unused: Mapping[Unit, float]) -> bool:
        """Best effort, on the primary only (the settlement gives back whatever this could not)."""
        if request_id in self._local or not self._may_try_primary():
            return False
        try:
            return await self._call(self.primary.release(request_id, unused))
        except _PrimaryDown:
            return False

    async def state(self, scope: str, limits: Sequence[LimitSpec], now: float) -> list[LimitState]:
        states, _ = await self.state_with_source(scope, limits, now)
        return states

    async def state_with_source(
        self, scope: str, limits: Sequence[LimitSpec], now: float
    ) -> tuple[list[LimitState], StateSource]:
        """`state`, and whether the primary answered ("shared") or, under fail_open while it is away, the numbers are
        only what this process admitted and owes since ("local": the primary's counters and other processes'
        spend are not in them)."""
        if self._may_try_primary():
            try:
                return await self._call(self.primary.state(scope, limits, now)), "shared"
            except _PrimaryDown:
                pass
        if self.on_error == "fail_closed":
            raise self._unavailable()
        states = []
        for spec in limits:
            span = window_span(spec.window, now)
            key = counter_key(scope, spec, span)
            reserved = sum(h.amounts.get(spec.unit, 0.0) for h in self._local.values() if h.counts_in(key))
            spent = sum(
                h.amounts.get(spec.unit, 0.0)
                for owed in (self._owed, self._unsent)
                for h in owed.values()
                if h.counts_in(key)
            )
            states.append(LimitState(spec, span, reserved, spent))
        return states, "local"

    async def reconcile(self) -> bool:
        """Pushes owed spend and replays failed settlements. True when nothing is left pending."""
        async with self._reconcile_lock:
            self._reconciling = True
            try:
                return await self._reconcile()
            finally:
                self._reconciling = False

    async def aclose(self) -> None:
        """Waits for a background reconciliation started by a recovery, if any."""
        task = self._reconcile_task
        if task is not None and not task.done():
            await task

    def _add_unsent(self, owed: _Held) -> None:
        """Spend never sent to the primary, added to its tenant's and windows' sum."""
        windows = owed.windows()
        total = self._unsent.get(windows)
        if total is None:
            self._unsent[windows] = owed
            return
        for unit, amount in owed.amounts.items():
            total.amounts[unit] = total.amounts.get(unit, 0.0) + amount

    async def _reconcile(self) -> bool:
        batch = 64
        for total in self._unsent.values():  # each sum is pushed under an id of its own from now on (spend settled
            self._owed[f"{self._sum_prefix}{next(self._sums)}"] = total  # meanwhile starts new sums)
        self._unsent.clear()
        owed = list(self._owed.items())
        for i in range(0, len(owed), batch):
            done = await asyncio.gather(*(self._apply_owed(rid, held) for rid, held in owed[i : i + batch]))
            if not all(done):
                return False
        retry = list(self._retry.items())
        for i in range(0, len(retry), batch):
            done = await asyncio.gather(*(self._apply_retry(rid, actual) for rid, actual in retry[i : i + batch]))
            if not all(done):
                return False
        return self.pending == 0

    async def _apply_owed(self, request_id: str, held: _Held) -> bool:
        try:
            await self._call(self._push(request_id, held))
        except _PrimaryDown:
            return False
        self._owed.pop(request_id, None)
        return True

    async def _apply_retry(self, request_id: str, actual: dict[Unit, float]) -> bool:
        try:
            await self._call(self.primary.settle(request_id, actual))
        except _PrimaryDown:
            return False
        self._retry.pop(request_id, None)
        return True

    def _push(self, request_id: str, held: _Held) -> Awaitable[bool]:
        return self.primary.record_spend(held.scope, request_id, held.limits, held.amounts, held.now)

    def _may_try_primary(self) -> bool:
        if not self._degraded:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + self.probe_interval_s  # this call is the probe; the others stay degraded
        return True

    async def probe(self) -> bool:
        """Asks the primary for a sign of life now (readiness checks); a failure counts as any other."""
        try:
            await self._call(self.primary.ping())
        except _PrimaryDown:
            return False
        return True

    async def _call(self, operation: Awaitable[T]) -> T:
        try:
            async with self.deadline(self.timeout_s):
                result = await operation
        except (RedisError, OSError) as exc:  # OSError includes TimeoutError (the deadline)
            self._failed(exc)
            raise _PrimaryDown from exc
        self._recovered()
        return result

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._next_probe = time.monotonic() + self.probe_interval_s
        if not self._degraded:
            self._degraded = True
            action = (
                "admitting requests without shared limits (fail_open)"
                if self.on_error == "fail_open"
                else "refusing requests that need it (fail_closed)"
            )
            logger.warning("shared state store unreachable (%s): %s", self.last_error, action)

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            logger.info(
                "shared state store reachable again after %d errors; %d settlements to reconcile",
                self.errors,
                self.pending,
            )
        if self.pending and not self._reconciling:
            task = self._reconcile_task
            if task is None or task.done():
                self._reconcile_task = asyncio.get_running_loop().create_task(self.reconcile())
                self._reconcile_task.add_done_callback(_log_failure)

    def _unavailable(self) -> StoreUnavailable:
        return StoreUnavailable(
            f"the shared state store is unreachable ({self.last_error or 'no answer'}); "
            "refusing the request (state_store.on_error: fail_closed)"
        )


def _log_failure(task: asyncio.Task[bool]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("reconciling with the shared state store failed", exc_info=exc)
