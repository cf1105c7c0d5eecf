"""Budgets and rate limits as one mechanism: counters per calendar window, reserved before a call
and settled after it.

    admission: for every limit of the tenant, spent + reserved + asked <= limit?  all yes ─► reserve all
    settlement (once per request id): reserved -= asked; spent += actual      (in the reservation's window)

A request reserves its worst case (prompt upper bound + max output tokens, priced), so concurrent
requests cannot overrun a budget: the check and the reservation are one atomic step (in process: no
await between them; in Redis: one Lua script). Settlement is idempotent: the reservation record is
deleted by the step that settles it, and a second settlement finds nothing to do.

Limits are `LimitSpec`s: a unit (tokens, usd, requests), a calendar window in UTC (minute, hour, day,
month) and a ceiling. Rate limits are the same thing: rpm = requests per minute, tpm = tokens per
minute. `ReservationStore` is the interface; `MemoryStore` is the embedded one (one process only).

A counter is the tenant's use of one unit in one window: it is named by them, never by the limit's name
or place in the config, so a reload that reorders, adds or removes budgets (or changes a ceiling) keeps
the window's spend. Limits of the same unit and window (tpm and a tokens-per-minute budget) share one
counter, and each holds it to its own ceiling.
"""

from __future__ import annotations

import calendar
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

Unit = Literal["tokens", "usd", "requests"]
Window = Literal["minute", "hour", "day", "month"]


@dataclass(frozen=True, slots=True)
class LimitSpec:
    name: str  # unique within a tenant, and stable: "tokens_per_day", "rpm", "tpm"
    unit: Unit
    window: Window
    limit: float
    former_name: str | None = None  # "budget[0]": its place in the config, which named counters before (adoption)


@dataclass(frozen=True, slots=True)
class WindowSpan:
    start: int  # epoch seconds, inclusive
    end: int  # epoch seconds, exclusive


def window_span(window: Window, now: float) -> WindowSpan:
    """The calendar window (UTC) that contains `now`."""
    t = int(now)
    if window == "month":
        return _month_span(t - t % 86400)
    if window == "minute":
        start = t - t % 60
        return WindowSpan(start, start + 60)
    if window == "hour":
        start = t - t % 3600
        return WindowSpan(start, start + 3600)
    if window == "day":
        start = t - t % 86400
        return WindowSpan(start, start + 86400)
    raise ValueError(f"unknown window {window!r}")


@functools.lru_cache(maxsize=8)
def _month_span(day_start: int) -> WindowSpan:
    """Months need the calendar; cached per day, so the hot path does this once a day."""
    moment = datetime.fromtimestamp(day_start, UTC)
    first = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    days = calendar.monthrange(moment.year, moment.month)[1]
    start = int(first.timestamp())
    return WindowSpan(start, start + days * 86400)


def counter_key(scope: str, spec: LimitSpec, span: WindowSpan) -> str:
    """The counter `spec` is held to: the scope's use of its unit in the window `span` (see the module)."""
    return f"{scope}:{spec.unit}:{spec.window}:{span.start}"


def held_to(scope: str, limits: Sequence[LimitSpec], now: float) -> dict[str, tuple[LimitSpec, WindowSpan]]:
    """Each counter `limits` use (in their order), with the limit of the lowest ceiling among those sharing it."""
    counters: dict[str, tuple[LimitSpec, WindowSpan]] = {}
    for spec in limits:
        span = window_span(spec.window, now)
        key = counter_key(scope, spec, span)
        shared = counters.get(key)
        if shared is None or spec.limit < shared[0].limit:
            counters[key] = (spec, span)
    return counters


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    denied: LimitSpec | None = None  # the first limit that did not fit
    retry_after_s: float | None = None  # until the denied limit's window ends, or HELD_RETRY_S when `held`
    degraded: bool = False  # admitted without the shared store (fail_open)
    held: bool = False  # denied for room reserved by requests in flight, not spent: it may come back any moment
    remaining: float | None = None  # what the denied limit had left (its ceiling less spend and reservations)


@dataclass(frozen=True, slots=True)
class LimitState:
    spec: LimitSpec
    span: WindowSpan
    reserved: float
    spent: float

    @property
    def remaining(self) -> float:
        return max(0.0, self.spec.limit - self.reserved - self.spent)


class ReservationStore(Protocol):
    @property
    def settles_in_process(self) -> bool:
        """True when `settle` never waits on I/O, so a caller need not shield it from cancellation."""
        ...

    async def reserve(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], asked: Mapping[Unit, float], now: float
    ) -> Admission: ...

    async def settle(self, request_id: str, actual: Mapping[Unit, float]) -> bool:
        """Turns the reservation into spend. False when there was nothing to settle (already done)."""
        ...

    async def release(self, request_id: str, unused: Mapping[Unit, float]) -> bool:
        """Gives back `unused` (at most what is held) of a reservation that stays held; its settlement then
        releases only the rest. False when there was none. Best effort: the settlement gives back all the same."""
        ...

    async def state(self, scope: str, limits: Sequence[LimitSpec], now: float) -> list[LimitState]: ...


HELD_RETRY_S = 1.0  # a denial for room requests in flight hold: they settle at what they spent, mostly far less


def denial(
    spec: LimitSpec, span: WindowSpan, now: float, remaining: float | None = None, held: bool = False
) -> Admission:
    """Refused until the window ends, unless what was spent leaves room for the request and the rest is `held` by
    reservations in flight (worst cases, leases), which settle at what they spent: then worth asking again in a
    moment. Requests in flight are each spent as one, so an rpm's held room is as good as spent. The stores name
    the first limit whose spend leaves no room, else the first that reservations fill: a second's wait is no
    answer when another limit has no room before its window ends."""
    if remaining is not None:
        remaining = max(0.0, remaining)
    if held and spec.unit != "requests":
        retry = min(HELD_RETRY_S, max(1.0, math.ceil(span.end - now)))
        return Admission(False, spec, retry, held=True, remaining=remaining)
    return Admission(False, spec, max(1.0, math.ceil(span.end - now)), remaining=remaining)


@dataclass(slots=True)
class _Counter:
    reserved: float = 0.0
    spent: float = 0.0
    expires: int = 0


@dataclass(slots=True)
class MemoryStore:
    """The embedded store: same semantics as the Redis one, for a single process. Atomic by
    construction: no method awaits between reading and writing the counters."""

    settles_in_process = True
    counters: dict[str, _Counter] = field(default_factory=dict)
    reservations: dict[str, list[tuple[str, Unit, float]]] = field(default_factory=dict)
    recorded: set[str] = field(default_factory=set)

    async def reserve(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], asked: Mapping[Unit, float], now: float
    ) -> Admission:
        if request_id in self.reservations:
            return Admission(True)  # the same request asking twice holds one reservation
        planned = held_to(scope, limits, now)  # a counter two limits share is reserved once
        held: tuple[LimitSpec, WindowSpan, float] | None = None  # the first only reservations fill (see `denial`)
        for key, (spec, span) in planned.items():
            amount = asked.get(spec.unit, 0.0)
            counter = self.counters.get(key) or _Counter()
            if amount > 0 and counter.reserved + counter.spent + amount > spec.limit:
                remaining = spec.limit - counter.reserved - counter.spent
                if counter.spent + amount > spec.limit or spec.unit == "requests":  # (see `denial`)
                    return denial(spec, span, now, remaining)
                held = held or (spec, span, remaining)
        if held is not None:
            spec, span, remaining = held
            return denial(spec, span, now, remaining, held=True)
        for key, (spec, span) in planned.items():
            counter = self.counters.setdefault(key, _Counter(expires=span.end))
            counter.reserved += asked.get(spec.unit, 0.0)
        self.reservations[request_id] = [
            (key, spec.unit, asked.get(spec.unit, 0.0)) for key, (spec, _) in planned.items()
        ]
        self._expire(now)
        return Admission(True)

    async def settle(self, request_id: str, actual: Mapping[Unit, float]) -> bool:
        held = self.reservations.pop(request_id, None)
        if held is None:
            return False
        for key, unit, amount in held:
            counter = self.counters.setdefault(key, _Counter())
            counter.reserved = max(0.0, counter.reserved - amount)
            counter.spent += actual.get(unit, 0.0)
        return True

    async def release(self, request_id: str, unused: Mapping[Unit, float]) -> bool:
        held = self.reservations.get(request_id)
        if held is None:
            return False
        kept = []
        for key, unit, amount in held:
            given = min(amount, max(0.0, unused.get(unit, 0.0)))
            counter = self.counters.setdefault(key, _Counter())
            counter.reserved = max(0.0, counter.reserved - given)
            kept.append((key, unit, amount - given))
        self.reservations[request_id] = kept
        return True

    async def state(self, scope: str, limits: Sequence[LimitSpec], now: float) -> list[LimitState]:
        states = []
        for spec in limits:
            span = window_span(spec.window, now)
            counter = self.counters.get(counter_key(scope, spec, span)) or _Counter()
            states.append(LimitState(spec, span, counter.reserved, counter.spent))
        return states

    async def record_spend(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], actual: Mapping[Unit, float], now: float
    ) -> bool:
        """Spend that happened without a reservation here (admitted while the store was unreachable)."""
        if request_id in self.recorded:
            return False
        self.recorded.add(request_id)
        if await self.settle(request_id, actual):
            return True
        for key, (spec, span) in held_to(scope, limits, now).items():
            counter = self.counters.setdefault(key, _Counter(expires=span.end))
            counter.spent += actual.get(spec.unit, 0.0)
        return True

    def _expire(self, now: float) -> None:
        if len(self.counters) < 4096:
            return
        for key in [k for k, c in self.counters.items() if c.expires and c.expires < now and not c.reserved]:
            del self.counters[key]
