"""Budget leases: a worker reserves room for many requests at once in the shared store and admits from it in
process, so most requests cost no Redis round trip at all.

    reserve  an open lease of the tenant where in flight + spent + asked <= leased, for every unit ─► admitted here
             none ─► one lease opened for all waiting callers: a reservation in the shared store of k × asked,
                     under the lease's own id; denied ─► exactly `asked`; denied ─► the request is refused
    settle   in flight -= asked; spent += actual, in the lease (in process)
    retire   a lease admits nothing after its windows' earliest end or LEASE_TTL_S after it opened; once
             nothing it admitted is in flight, it is settled in the shared store with what its requests spent,
             and the room they did not use goes back

A lease is an ordinary reservation of the inner store (`GuardedStore` over `RedisStore`): it is checked against
every limit atomically with every other worker's, so parallel requests across workers still cannot overrun a
budget, and the inner store's deadlines, `fail_open`/`fail_closed` and replays apply to it unchanged.

k (requests per lease) doubles while leases fill up before they expire and halves when one expires less than
half used, between 1 and MAX_REQUESTS_PER_LEASE; at k = 1 this is the request-by-request reservation. The
price: room leased to one worker is not free for another until the lease retires (LEASE_TTL_S at most), so near
a limit a request can be refused that a single shared counter would have admitted; none is admitted over it.
The shared counters show leased room as reserved; `state` retires this process's leases first, so its view is
exact for what this process did.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from policies.budgets import Admission, LimitSpec, LimitState, ReservationStore, Unit, window_span

logger = logging.getLogger("gateway.state")

LEASE_TTL_S = 0.25
MAX_REQUESTS_PER_LEASE = 64
SLACK = 1e-9  # relative: k additions of an amount may exceed k × amount in the last bit


@dataclass(slots=True, eq=False)
class _Lease:
    lease_id: str
    size: int  # k: requests of the opener's size it holds
    leased: dict[Unit, float]
    expires: float  # wall clock, as the callers' `now`
    in_flight: dict[Unit, float] = field(default_factory=dict)
    spent: dict[Unit, float] = field(default_factory=dict)
    holders: int = 0  # admitted requests not settled yet
    admitted: int = 0
    open: bool = True
    degraded: bool = False
    timer: asyncio.TimerHandle | None = None

    def fits(self, asked: Mapping[Unit, float]) -> bool:
        leased, in_flight, spent = self.leased, self.in_flight, self.spent
        for unit, amount in asked.items():
            if amount > 0:
                room = leased.get(unit, 0.0)
                if in_flight.get(unit, 0.0) + spent.get(unit, 0.0) + amount > room + room * SLACK:
                    return False
        return True

    def take(self, asked: Mapping[Unit, float]) -> None:
        in_flight = self.in_flight
        for unit, amount in asked.items():
            in_flight[unit] = in_flight.get(unit, 0.0) + amount
        self.holders += 1
        self.admitted += 1

    def release(self, asked: Mapping[Unit, float], actual: Mapping[Unit, float]) -> None:
        in_flight, spent = self.in_flight, self.spent
        for unit, amount in asked.items():
            in_flight[unit] = in_flight.get(unit, 0.0) - amount
        for unit, amount in actual.items():
            spent[unit] = spent.get(unit, 0.0) + amount
        self.holders -= 1


@dataclass(slots=True, eq=False)
class _Book:
    """One tenant's leases (for one set of limits)."""

    scope: str
    limits: tuple[LimitSpec, ...]
    leases: list[_Lease] = field(default_factory=list)
    size: int = 1
    opening: asyncio.Task[tuple[Admission, _Lease | None]] | None = None


@dataclass(slots=True)
class _Held:
    book: _Book
    lease: _Lease
    asked: dict[Unit, float]


class LeasedStore:
    """`ReservationStore` that admits from leases taken in `inner` (see the module's docstring)."""

    settles_in_process = True  # settle never waits: callers need not shield it from cancellation

    def __init__(
        self, inner: ReservationStore, ttl_s: float = LEASE_TTL_S, max_size: int = MAX_REQUESTS_PER_LEASE
    ) -> None:
        self.inner = inner
        self.ttl_s = ttl_s
        self.max_size = max_size
        self._books: dict[tuple[str, tuple[LimitSpec, ...]], _Book] = {}
        self._held: dict[str, _Held] = {}
        self._ids = itertools.count(1)
        self._prefix = f"lease:{os.getpid()}-{secrets.token_hex(4)}:"
        self._settling: set[asyncio.Task[None]] = set()
        self.leases_opened = 0

    # ── the request path ──────────────────────────────────────────────────────────────────────────────────

    async def reserve(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], asked: Mapping[Unit, float], now: float
    ) -> Admission:
        if request_id in self._held:
            return Admission(True)  # the same request asking twice holds one reservation
        key = (scope, limits if isinstance(limits, tuple) else tuple(limits))
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = _Book(scope, key[1])
        while True:
            lease = self._find(book, asked, now)
            if lease is not None:
                return self._admit(request_id, book, lease, asked)
            opening = book.opening
            mine = opening is None
            if opening is None:  # a task, so that a caller that gives up does not leave a reservation unaccounted
                opening = book.opening = asyncio.get_running_loop().create_task(self._open(book, asked, now))
            admission, lease = await asyncio.shield(opening)
            if mine:
                if lease is not None and lease.fits(asked):
                    return self._admit(request_id, book, lease, asked)
                if not admission.admitted:
                    return admission
            # a lease was opened, for another caller's size (it may have room for this one too) or taken meanwhile

    async def settle(self, request_id: str, actual: Mapping[Unit, float]) -> bool:
        held = self._held.pop(request_id, None)
        if held is None:
            return False
        lease = held.lease
        lease.release(held.asked, actual)
        if not lease.open and lease.holders == 0:
            self._settle_lease(lease)
        return True

    def _find(self, book: _Book, asked: Mapping[Unit, float], now: float) -> _Lease | None:
        leases = book.leases
        if leases and leases[0].expires <= now:  # the oldest expires first
            for lease in [lease for lease in leases if lease.expires <= now]:
                self._retire(book, lease)
        for lease in reversed(leases):  # the newest has room most often; older ones fill up and stay full
            if lease.fits(asked):
                return lease
        return None

    def _admit(self, request_id: str, book: _Book, lease: _Lease, asked: Mapping[Unit, float]) -> Admission:
        held_asked = dict(asked)
        lease.take(held_asked)
        self._held[request_id] = _Held(book, lease, held_asked)
        return Admission(True, degraded=lease.degraded)

    async def _open(self, book: _Book, asked: Mapping[Unit, float], now: float) -> tuple[Admission, _Lease | None]:
        """Opens a lease with room for `asked` and (k - 1) more like it: the inner store's admission, and the lease.
        A lease admitted without the shared store (fail_open) is the opener's alone: its spend is owed at once."""
        try:
            if book.leases:  # the open ones are full before their time: lease more at once
                book.size = min(self.max_size, book.size * 2)
            size = book.size
            admission, lease = await self._lease(book, asked, size, now)
            if not admission.admitted and size > 1:
                book.size = 1  # near a limit: back to one request at a time
                admission, lease = await self._lease(book, asked, 1, now)
            loop = asyncio.get_running_loop()
            if lease is not None and not lease.degraded:
                book.leases.append(lease)
                lease.timer = loop.call_at(loop.time() + max(0.0, lease.expires - now), self._expired, book, lease)
            elif lease is not None:  # settled here if its opener gave up before taking it
                loop.call_later(self.ttl_s, self._unclaimed, lease)
            return admission, lease
        finally:
            book.opening = None

    async def _lease(
        self, book: _Book, asked: Mapping[Unit, float], size: int, now: float
    ) -> tuple[Admission, _Lease | None]:
        leased = {unit: amount * size for unit, amount in asked.items()}
        lease_id = f"{self._prefix}{next(self._ids)}"
        admission = await self.inner.reserve(book.scope, lease_id, book.limits, leased, now)
        if not admission.admitted:
            return admission, None
        self.leases_opened += 1
        ends = min((window_span(spec.window, now).end for spec in book.limits), default=now + self.ttl_s)
        lease = _Lease(lease_id, size, leased, min(now + self.ttl_s, ends), degraded=admission.degraded)
        lease.open = not lease.degraded
        return admission, lease

    # ── retiring and settling leases ──────────────────────────────────────────────────────────────────────

    def _expired(self, book: _Book, lease: _Lease) -> None:
        lease.timer = None
        self._retire(book, lease)

    def _unclaimed(self, lease: _Lease) -> None:
        if lease.admitted == 0:
            self._settle_lease(lease)

    def _retire(self, book: _Book, lease: _Lease) -> None:
        if not lease.open:
            return
        lease.open = False
        book.leases.remove(lease)
        if lease.timer is not None:
            lease.timer.cancel()
            lease.timer = None
        if lease.admitted * 2 < lease.size:
            book.size = max(1, book.size // 2)  # it expired half empty: lease less next time
        if lease.holders == 0:
            self._settle_lease(lease)

    def _settle_lease(self, lease: _Lease) -> None:
        task = asyncio.get_running_loop().create_task(self._settle_in_inner(lease))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle_in_inner(self, lease: _Lease) -> None:
        try:
            await self.inner.settle(lease.lease_id, lease.spent)
        except Exception:  # the inner store keeps its own replays; this must not end in an unretrieved error
            logger.exception("settling budget lease %s failed", lease.lease_id)

    async def flush(self, scope: str | None = None) -> None:
        """Retires the open leases (of `scope`, or all) and waits until those with nothing in flight are settled
        in the inner store."""
        for book in list(self._books.values()):
            if scope is None or book.scope == scope:
                for lease in list(book.leases):
                    self._retire(book, lease)
        if self._settling:
            await asyncio.gather(*list(self._settling))

    # ── views and lifecycle ───────────────────────────────────────────────────────────────────────────────

    async def state(self, scope: str, limits: Sequence[LimitSpec], now: float) -> list[LimitState]:
        await self.flush(scope)
        return await self.inner.state(scope, limits, now)

    async def aclose(self) -> None:
        """Settles every lease nothing is in flight on; a lease still holding requests is settled by the last of
        them (after a drain, there are none)."""
        await self.flush()
        if self._held:
            logger.warning("%d requests still hold budget leases at shutdown", len(self._held))
