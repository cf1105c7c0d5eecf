"""Circuit breakers: one per upstream deployment, so a failing deployment is skipped instead of hammered.

Pure: stdlib only, no I/O. The clock is injectable (`time.monotonic` by default) so tests never sleep.

States:

- CLOSED: every call is allowed. `failures` consecutive failures open the circuit; a success resets the count.
- OPEN: every call is refused (`allow()` is False, fail fast) until `cooldown_s` has passed since the circuit
  opened.
- HALF_OPEN: the cooldown has elapsed. The first `allow()` lets exactly one probe through; while that probe is
  in flight every other caller is refused. The probe's success closes the circuit; its failure re-opens it with
  a fresh cooldown measured from the probe's failure. An OPEN circuit whose cooldown has elapsed already reports
  HALF_OPEN (reading `state` never changes anything); the transition itself happens in the next `allow()`.

What counts as a failure is the caller's decision. Every call that `allow()` let through must end in exactly
one of `record_success()`, `record_failure()` or `release()`. The gateway reports an upstream 5xx, a timeout or a
connection error as `record_failure()`; a 2xx (or any answer that shows the upstream is healthy) as
`record_success()`; and a call that ended without a verdict on the upstream's health -- cancelled by the client,
or a 4xx caused by the client's own request -- as `release()`, which frees the probe slot in HALF_OPEN and does
nothing in CLOSED.

Verdicts that cannot belong to a probe are ignored: calls let through while CLOSED may still be in flight when the
circuit opens, and their late failures must not extend the cooldown (nor their late successes close the circuit
without a probe). So in OPEN, and in HALF_OPEN with no probe in flight, verdicts are no-ops. While a probe is in
flight a verdict is attributed to the probe (the breaker hands out no tokens, so a late verdict from a call let
through before the circuit opened is indistinguishable from the probe's; this is rare and errs either way for one
cooldown at most).

Settings can change on a config reload (`CircuitRegistry.get` updates them in place); a new `failures` threshold
applies from the next verdict and a new `cooldown_s` also to the cooldown currently running.

Thread-safety: none needed and none provided. The gateway runs on a single asyncio event loop and no method
awaits, so each call is atomic with respect to other coroutines. Do not share a breaker across threads.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable

Clock = Callable[[], float]


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


def _check(failures: int, cooldown_s: float) -> None:
    if failures < 1:
        raise ValueError(f"failures must be >= 1, got {failures}")
    if not cooldown_s >= 0:  # also rejects NaN
        raise ValueError(f"cooldown_s must be >= 0, got {cooldown_s}")


class CircuitBreaker:
    """A consecutive-failure circuit breaker with a single half-open probe. See the module docstring."""

    __slots__ = ("_clock", "_consecutive", "_cooldown_s", "_failures", "_opened_at", "_probing", "_state")

    def __init__(self, failures: int, cooldown_s: float, clock: Clock = time.monotonic) -> None:
        _check(failures, cooldown_s)
        self._failures = failures
        self._cooldown_s = float(cooldown_s)
        self._clock = clock
        # The stored state is CLOSED, OPEN or HALF_OPEN; an OPEN circuit whose cooldown has elapsed becomes
        # HALF_OPEN only in allow(), `state` merely reports it.
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False  # HALF_OPEN only: the probe is in flight

    # ---------------------------------------------------------------------------------------------- settings

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def cooldown_s(self) -> float:
        return self._cooldown_s

    def configure(self, failures: int, cooldown_s: float) -> None:
        """Update the settings in place, keeping the state (used on config reloads)."""
        _check(failures, cooldown_s)
        self._failures = failures
        self._cooldown_s = float(cooldown_s)

    # ----------------------------------------------------------------------------------------------- calls

    def allow(self) -> bool:
        """May a call go to the upstream now? A True must be followed by exactly one verdict or `release()`."""
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.OPEN:
            if not self._cooled_down():
                return False
            self._state = CircuitState.HALF_OPEN
            self._probing = False
        if self._probing:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        if self._state is CircuitState.CLOSED:
            self._consecutive = 0
        elif self._state is CircuitState.HALF_OPEN and self._probing:
            self._close()

    def record_failure(self) -> None:
        if self._state is CircuitState.CLOSED:
            self._consecutive += 1
            if self._consecutive >= self._failures:
                self._open()
        elif self._state is CircuitState.HALF_OPEN and self._probing:
            self._consecutive += 1
            self._open()  # a fresh cooldown, from now

    def release(self) -> None:
        """The allowed call ended without a verdict: free the probe slot (HALF_OPEN); nothing otherwise."""
        if self._state is CircuitState.HALF_OPEN:
            self._probing = False

    # ----------------------------------------------------------------------------------------------- views

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self._cooled_down():
            return CircuitState.HALF_OPEN
        return self._state

    @property
    def retry_in_s(self) -> float:
        """Seconds until a probe is allowed; 0 when the circuit is not open (including HALF_OPEN)."""
        if self._state is not CircuitState.OPEN or self._opened_at is None:
            return 0.0
        elapsed = self._clock() - self._opened_at
        return 0.0 if elapsed >= self._cooldown_s else self._cooldown_s - elapsed

    @property
    def probe_in_flight(self) -> bool:
        return self._state is CircuitState.HALF_OPEN and self._probing

    def snapshot(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "consecutive_failures": self._consecutive,
            "opened_at": self._opened_at,
            "retry_in_s": self.retry_in_s,
        }

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state.value}, consecutive_failures={self._consecutive}, "
            f"failures={self._failures}, cooldown_s={self._cooldown_s})"
        )

    # --------------------------------------------------------------------------------------------- helpers

    def _cooled_down(self) -> bool:
        return self._opened_at is None or self._clock() - self._opened_at >= self._cooldown_s

    def _open(self) -> None:
        self._state = CircuitState.OPEN
        self._opened_at = self._clock()
        self._probing = False

    def _close(self) -> None:
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._opened_at = None
        self._probing = False


class CircuitRegistry:
    """One breaker per deployment label, created on first use with that deployment's settings; survives
    config reloads for labels that still exist (settings updated in place)."""

    __slots__ = ("_breakers", "_clock")

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, label: str, failures: int, cooldown_s: float) -> CircuitBreaker:
        breaker = self._breakers.get(label)
        if breaker is None:
            breaker = self._breakers[label] = CircuitBreaker(failures, cooldown_s, self._clock)
        elif breaker.failures != failures or breaker.cooldown_s != cooldown_s:
            breaker.configure(failures, cooldown_s)
        return breaker

    def retain(self, labels: Iterable[str]) -> None:
        """Forget the breakers of deployments no longer configured (call after a config reload)."""
        keep = set(labels)
        for label in [label for label in self._breakers if label not in keep]:
            del self._breakers[label]

    def __contains__(self, label: object) -> bool:
        return label in self._breakers

    def __len__(self) -> int:
        return len(self._breakers)

    def snapshot(self) -> dict[str, dict[str, object]]:
        return {label: self._breakers[label].snapshot() for label in sorted(self._breakers)}
