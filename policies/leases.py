"""Budget leases: a worker reserves room for many requests at once in the shared store and admits from it in
process, so most requests cost no Redis round trip at all.

    reserve  an open lease of the tenant where in flight + spent + asked <= leased, for every unit ─► admitted here
             none ─► one lease opened for all waiting callers: a reservation in the shared store of k × asked,
                     under the lease's own id; denied ─► exactly `asked`; denied ─► the request is refused.
                     A caller that another's opening did not serve (denied, or MAX_WAITS of them) reserves its
                     own ask at once, beside the others, instead of queueing for the next.
    prefetch a request that leaves its lease PREFETCH_AT full, or admits from it in the last quarter of its time,
             starts the next opening in the background, so the requests after it find room instead of waiting
             for Redis (not for leases under PREFETCH_MIN_SIZE requests)
    settle   in flight -= asked; spent += actual, in the lease (in process)
    retire   a lease admits nothing once full, after its windows' earliest end or LEASE_TTL_S after it opened;
             the room none of its requests took goes back at once, and while some are still in flight, what
             the finished ones asked beyond what they spent, every RELEASE_EVERY_S; once nothing it admitted is
             in flight, it is settled in the shared store with what its requests spent, and the rest goes back
    close    openings in flight end first; leases still holding requests get SHUTDOWN_WAIT_S; then they are
             settled with those requests' worst case as spent, so no leased room stays reserved once the process
             is gone

A lease is an ordinary reservation of the inner store (`GuardedStore` over `RedisStore`): it is checked against
every limit atomically with every other worker's, so parallel requests across workers still cannot overrun a
budget, and the inner store's deadlines, `fail_open`/`fail_closed` and replays apply to it unchanged.

k (requests per lease) doubles while leases fill up before they expire and halves when one expires less than
half used, between 1 and MAX_REQUESTS_PER_LEASE; at k = 1 this is the request-by-request reservation. The
price: room leased to one worker is not free for another until the lease retires (LEASE_TTL_S at most), so near
a limit a request can be refused that a single shared counter would have admitted; none is admitted over it.

A process that dies (SIGKILL, out of memory) settles nothing: what its reservations hold stays reserved until
the window ends. For its requests in flight that is their worst case, as without leases, and for its retired
leases what their finished requests spent (up to RELEASE_EVERY_S ago: their worst case); but its open leases
(the current one and the one opened ahead, per tenant) hold room no request may have taken. So a lease holds
at most LEASE_SHARE of any limit whose window is longer than a minute (a minute's ends soon enough): a dead
worker locks at most about twice that beyond what its requests took.

The shared counters show leased room as reserved; `state` retires this process's leases first, so its view is
exact for what this process did.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies.budgets import Admission, LimitSpec, LimitState, ReservationStore, Unit, window_span

logger = logging.getLogger("gateway.state")

LEASE_TTL_S = 0.25
MAX_REQUESTS_PER_LEASE = 256
MAX_WAITS = 8  # openings a caller waits for (k doubles each time) before it reserves its own ask alone
SHUTDOWN_WAIT_S = 2.0  # how long closing waits for requests still holding leases
PREFETCH_AT = 0.75  # share of a lease admitted (or of its time gone) when the next one opens, in the background
PREFETCH_MIN_SIZE = 4  # smaller leases (a slow tenant, or one near a limit) are not prefetched
LEASE_SHARE = 0.01  # the most of a limit (longer than a minute) one lease holds: what a dead worker may lock
RELEASE_EVERY_S = 0.25  # how often a retired lease gives back what its finished requests asked beyond their spend


def most_requests(limits: Sequence[LimitSpec], asked: Mapping[Unit, float]) -> int:
    """The most requests of `asked`'s size one lease may hold: LEASE_SHARE of each limit longer than a minute
    (at least one request, which is what a reservation without leases would hold)."""
    most = MAX_REQUESTS_PER_LEASE
    for spec in limits:
        amount = asked.get(spec.unit, 0.0)
        if amount > 0 and spec.window != "minute":
            most = min(most, int(spec.limit * LEASE_SHARE / amount))
    return max(1, most)


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
    open: bool = True  # admits requests (a degraded lease never does: it is its opener's alone)
    settled: bool = False  # handed to the inner store: nothing may be admitted from it any more
    degraded: bool = False
    timer: asyncio.TimerHandle | None = None
    released: dict[Unit, float] = field(default_factory=dict)  # given back while its requests were in flight
    releasing: asyncio.TimerHandle | None = None  # the next give-back, once more of its requests are done

    def fits(self, asked: Mapping[Unit, float]) -> bool:
        leased, in_flight, spent = self.leased, self.in_flight, self.spent
        for unit, amount in asked.items():
            if amount > 0 and in_flight.get(unit, 0.0) + spent.get(unit, 0.0) + amount > leased.get(unit, 0.0):
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


_Opened = tuple[Admission, "_Lease | None"]


def _retrieved(opening: asyncio.Task[_Opened]) -> None:
    """A prefetch has no caller to receive its failure (the inner store logs and counts it)."""
    if not opening.cancelled():
        opening.exception()


@dataclass(slots=True, eq=False)
class _Book:
    """One tenant's leases (for one set of limits)."""

    scope: str
    limits: tuple[LimitSpec, ...]
    leases: list[_Lease] = field(default_factory=list)
    size: int = 1
    opening: asyncio.Task[_Opened] | None = None
    filled: bool = False  # a lease was retired full since the last opening


@dataclass(slots=True)
class _Held:
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
        self._drained: asyncio.Event | None = None  # set by aclose: the last request holding a lease is done
        self._closing = False
        self.leases_opened = 0

    # ── the request path ──────────────────────────────────────────────────────────────────────────────────

    async def reserve(
        self, scope: str, request_id: str, limits: Sequence[LimitSpec], asked: Mapping[Unit, float], now: float
    ) -> Admission:
        held = self._held.get(request_id)
        if held is not None:
            return Admission(True, degraded=held.lease.degraded)  # the same request asking twice holds one
        key = (scope, limits if isinstance(limits, tuple) else tuple(limits))
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = _Book(scope, key[1])
        lease = self._find(book, asked, now)
        if lease is not None:  # most requests: no loop, no clock
            admission = self._admit(request_id, book, lease, asked)
            filling = lease.admitted >= lease.size * PREFETCH_AT
            if lease.size >= PREFETCH_MIN_SIZE and (filling or lease.expires - now < self.ttl_s * (1 - PREFETCH_AT)):
                self._prefetch(book, asked, now, grow=filling)
            return admission
        loop = asyncio.get_running_loop()
        started, waits, alone = loop.time(), 0, False
        while True:
            current = now + (loop.time() - started)  # a caller that waited is in the window of its clock now
            lease = self._find(book, asked, current)
            if lease is not None:
                return self._admit(request_id, book, lease, asked)
            opening, mine = book.opening, True
            if opening is None:  # tasks, so that a caller that gives up leaves no reservation unaccounted
                opening = self._start_opening(book, asked, current)
            elif alone:  # its own reservation, beside everyone else's, instead of waiting in turn
                opening = loop.create_task(self._lease(book, asked, 1, current))
            else:
                mine = False
            admission, lease = await asyncio.shield(opening)
            if mine:
                # (an open lease only: others may have filled it meanwhile, and its room not taken gone back;
                # a degraded one is its opener's alone)
                if lease is not None and (lease.open or (lease.degraded and not lease.settled)) and lease.fits(asked):
                    return self._admit(request_id, book, lease, asked)
                if not admission.admitted:
                    return admission
            else:  # another's opening: a denial, or many turns without room, and this caller goes alone
                waits += 1
                alone = not admission.admitted or waits >= MAX_WAITS

    async def settle(self, request_id: str, actual: Mapping[Unit, float]) -> bool:
        held = self._held.pop(request_id, None)
        if held is None:
            return False
        lease = held.lease
        lease.release(held.asked, actual)
        if not lease.open:
            if lease.holders == 0:
                self._settle_lease(lease)
            elif lease.releasing is None and not lease.degraded:  # what it asked beyond what it spent goes back
                lease.releasing = asyncio.get_running_loop().call_later(RELEASE_EVERY_S, self._release_unused, lease)
        if self._drained is not None and not self._held:
            self._drained.set()
        return True

    async def release(self, request_id: str, unused: Mapping[Unit, float]) -> bool:
        """Part of a request's reservation back into its lease, for others to take."""
        held = self._held.get(request_id)
        if held is None:
            return False
        in_flight = held.lease.in_flight
        for unit, amount in held.asked.items():
            given = min(amount, max(0.0, unused.get(unit, 0.0)))
            held.asked[unit] = amount - given
            in_flight[unit] = in_flight.get(unit, 0.0) - given
        return True

    def _start_opening(
        self, book: _Book, asked: Mapping[Unit, float], now: float, grow: bool = True
    ) -> asyncio.Task[_Opened]:
        opening = book.opening = asyncio.get_running_loop().create_task(self._open(book, asked, now, grow))
        opening.add_done_callback(_retrieved)
        return opening

    def _prefetch(self, book: _Book, asked: Mapping[Unit, float], now: float, grow: bool) -> None:
        """The lease that just admitted a request is PREFETCH_AT full, or PREFETCH_AT through its time: the next
        one is opened now, in the background, so that the requests after it find room instead of waiting for
        Redis. Only a lease filling up makes the next one bigger; one running out of time keeps the size (and
        halves it if it expires half empty)."""
        if book.opening is None and not self._closing:
            self._start_opening(book, asked, now, grow)

    def _find(self, book: _Book, asked: Mapping[Unit, float], now: float) -> _Lease | None:
        leases = book.leases
        if leases and leases[0].expires <= now:  # the oldest expires first
            for lease in [lease for lease in leases if lease.expires <= now]:
                self._retire(book, lease)
        for lease in reversed(leases):  # the newest has room most often; older ones fill up and stay full
            if lease.expires > now and lease.fits(asked):  # (a clock stepped back does not reopen one)
                return lease
        return None

    def _admit(self, request_id: str, book: _Book, lease: _Lease, asked: Mapping[Unit, float]) -> Admission:
        if request_id in self._held:  # the same id admitted meanwhile, by a concurrent call
            return Admission(True, degraded=self._held[request_id].lease.degraded)
        held_asked = dict(asked)
        lease.take(held_asked)
        self._held[request_id] = _Held(lease, held_asked)
        if lease.open and lease.admitted >= lease.size:  # full: retired now, so its spend reaches the shared books
            book.filled = True  # as soon as its requests are done, not at its expiry
            self._retire(book, lease)
        return Admission(True, degraded=lease.degraded)

    async def _open(self, book: _Book, asked: Mapping[Unit, float], now: float, grow: bool = True) -> _Opened:
        """The shared opening: a lease with room for `asked` and (k - 1) more like it, or failing that for `asked`
        alone. Returns the inner store's admission and the lease (in the book already, unless degraded)."""
        try:
            if grow and (book.leases or book.filled):  # the last ones filled up (or nearly) in time: lease more
                book.size = min(self.max_size, book.size * 2)
            book.filled = False
            size = min(book.size, most_requests(book.limits, asked))
            admission, lease = await self._lease(book, asked, size, now)
            if not admission.admitted and size > 1:
                book.size = 1  # near a limit: back to one request at a time
                admission, lease = await self._lease(book, asked, 1, now)
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
        loop = asyncio.get_running_loop()
        if lease.degraded:  # admitted without the shared store (fail_open): the opener's alone, owed at once
            lease.open = False
            loop.call_later(self.ttl_s, self._unclaimed, lease)  # settled here if its opener gave up before
        else:
            book.leases.append(lease)
            lease.timer = loop.call_at(loop.time() + max(0.0, lease.expires - now), self._expired, book, lease)
        return admission, lease

    # ── retiring and settling leases ──────────────────────────────────────────────────────────────────────

    def _expired(self, book: _Book, lease: _Lease) -> None:
        lease.timer = None
        if lease.open and lease.admitted * 2 < lease.size:
            book.size = max(1, min(book.size, lease.size) // 2)  # it expired half empty: lease less next time
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
        if lease.holders == 0:
            self._settle_lease(lease)
        elif not lease.degraded:  # the room none of its requests took goes back now, not when the last is done
            self._release_unused(lease)

    def _release_unused(self, lease: _Lease) -> None:
        """Gives back, in the inner store, what a retired lease holds beyond its requests in flight (at their worst
        case) and what its finished ones spent: so that a long request does not keep its finished neighbours'
        worst case reserved, for others and after a crash."""
        lease.releasing = None
        if lease.settled:
            return
        in_flight, spent, released = lease.in_flight, lease.spent, lease.released
        unused: dict[Unit, float] = {}
        for unit, room in lease.leased.items():
            amount = room - released.get(unit, 0.0) - in_flight.get(unit, 0.0) - spent.get(unit, 0.0)
            if amount > room * 1e-9:  # (not a float's last bits)
                unused[unit] = amount
                released[unit] = released.get(unit, 0.0) + amount
        if unused:
            self._in_background(self._release_in_inner(lease.lease_id, unused))

    async def _release_in_inner(self, lease_id: str, unused: Mapping[Unit, float]) -> None:
        try:
            await self.inner.release(lease_id, unused)
        except Exception:  # best effort: the lease's settlement gives back whatever this did not
            logger.exception("giving back the unused room of budget lease %s failed", lease_id)

    def _in_background(self, operation: Coroutine[Any, Any, None]) -> None:
        """A call to the inner store that nothing waits for, but closing does."""
        task = asyncio.get_running_loop().create_task(operation)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def _settle_lease(self, lease: _Lease, charge_in_flight: bool = False) -> None:
        if lease.settled:
            return
        lease.settled = True
        if lease.releasing is not None:
            lease.releasing.cancel()
            lease.releasing = None
        spent = lease.spent
        if charge_in_flight:  # shutting down with requests unfinished: charged their worst case
            spent = {unit: spent.get(unit, 0.0) + lease.in_flight.get(unit, 0.0) for unit in lease.leased}
        self._in_background(self._settle_in_inner(lease.lease_id, spent))

    async def _settle_in_inner(self, lease_id: str, spent: Mapping[Unit, float]) -> None:
        try:
            await self.inner.settle(lease_id, spent)
        except Exception:  # the inner store keeps its own replays; this must not end in an unretrieved error
            logger.exception("settling budget lease %s failed", lease_id)

    async def flush(self, scope: str | None = None) -> None:
        """Retires the open leases (of `scope`, or all) and waits until those with nothing in flight are settled
        in the inner store. A caller that gives up (a deadline) does not stop the settlements."""
        for book in list(self._books.values()):
            if scope is None or book.scope == scope:
                for lease in list(book.leases):
                    self._retire(book, lease)
        if self._settling:
            await asyncio.wait(set(self._settling))

    # ── views and lifecycle ───────────────────────────────────────────────────────────────────────────────

    async def state(self, scope: str, limits: Sequence[LimitSpec], now: float) -> list[LimitState]:
        await self.flush(scope)
        return await self.inner.state(scope, limits, now)

    async def aclose(self, wait_s: float = SHUTDOWN_WAIT_S) -> None:
        """Settles every lease. Requests still in flight get `wait_s` to finish; then their leases are settled
        with their worst case as spent, so no leased room stays reserved after the process is gone."""
        self._closing = True  # no more prefetches; the openings in flight end before the leases are retired
        openings = {book.opening for book in self._books.values() if book.opening is not None}
        if openings:
            await asyncio.wait(openings)
        await self.flush()
        if self._held:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), wait_s)
        if self._held:
            logger.warning(
                "%d requests still held budget leases at shutdown: charged their worst case", len(self._held)
            )
            for lease in {held.lease for held in self._held.values()}:
                self._settle_lease(lease, charge_in_flight=True)
        if self._settling:
            await asyncio.wait(set(self._settling))
