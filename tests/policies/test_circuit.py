"""Circuit breakers per deployment: policies/circuit.py. A fake clock throughout; nothing sleeps."""

from __future__ import annotations

import math
import random

import pytest

from policies.circuit import CircuitBreaker, CircuitRegistry, CircuitState

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(failures: int = 3, cooldown_s: float = 10.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(failures, cooldown_s, clock), clock


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def trip(breaker: CircuitBreaker) -> None:
    fail(breaker, breaker.failures)
    assert breaker.state is OPEN


# ------------------------------------------------------------------------------------------------ closed


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 10])
def test_opens_after_exactly_n_consecutive_failures(failures: int) -> None:
    breaker, _ = make(failures)
    fail(breaker, failures - 1)
    assert breaker.state is CLOSED
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is OPEN
    assert not breaker.allow()


@pytest.mark.parametrize("failures", [2, 3, 5])
def test_a_success_resets_the_consecutive_count(failures: int) -> None:
    breaker, _ = make(failures)
    for _ in range(4):  # N-1 failures then a success, repeatedly: never opens
        fail(breaker, failures - 1)
        assert breaker.snapshot()["consecutive_failures"] == failures - 1
        assert breaker.allow()
        breaker.record_success()
        assert breaker.state is CLOSED
        assert breaker.snapshot()["consecutive_failures"] == 0
    fail(breaker, failures)
    assert breaker.state is OPEN


def test_release_in_closed_does_nothing() -> None:
    breaker, _ = make(2)
    fail(breaker)
    assert breaker.allow()
    breaker.release()
    assert breaker.state is CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 1
    fail(breaker)
    assert breaker.state is OPEN


# -------------------------------------------------------------------------------------------------- open


@pytest.mark.parametrize("cooldown", [0.5, 10.0, 300.0])
def test_fails_fast_while_open(cooldown: float) -> None:
    breaker, clock = make(2, cooldown)
    trip(breaker)
    for elapsed in (0.0, cooldown * 0.25, cooldown * 0.5, cooldown * 0.999):
        clock.now = 1000.0 + elapsed
        assert breaker.state is OPEN
        assert not breaker.allow()
        assert breaker.retry_in_s == pytest.approx(cooldown - elapsed)


def test_late_verdicts_while_open_are_ignored() -> None:
    """Calls let through while CLOSED may finish after the circuit opened: no cooldown extension, no close."""
    breaker, clock = make(2, 10.0)
    in_flight = [breaker.allow() for _ in range(4)]
    assert all(in_flight)
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is OPEN
    clock.advance(6)
    breaker.record_failure()  # late
    breaker.record_success()  # late
    breaker.release()  # late
    assert breaker.state is OPEN
    assert breaker.snapshot()["opened_at"] == 1000.0
    clock.advance(4)
    assert breaker.allow()  # the cooldown ran from the opening, not from the late failure


# --------------------------------------------------------------------------------------------- half-open


@pytest.mark.parametrize("cooldown", [0.5, 10.0, 300.0])
def test_one_probe_after_cooldown_and_only_one_in_flight(cooldown: float) -> None:
    breaker, clock = make(3, cooldown)
    trip(breaker)
    clock.advance(cooldown)
    assert breaker.state is HALF_OPEN
    assert breaker.retry_in_s == 0.0
    assert breaker.allow()  # the probe
    assert breaker.probe_in_flight
    for _ in range(5):
        assert not breaker.allow()
        clock.advance(cooldown)  # however long the probe takes
    assert breaker.state is HALF_OPEN


def test_reading_state_does_not_transition() -> None:
    breaker, clock = make(1, 10.0)
    trip(breaker)
    clock.advance(10)
    for _ in range(3):
        assert breaker.state is HALF_OPEN
        assert breaker.snapshot()["state"] == "half_open"
        assert breaker.retry_in_s == 0.0
    assert not breaker.probe_in_flight
    assert breaker.allow()  # reading did not use up the probe
    assert not breaker.allow()


@pytest.mark.parametrize("failures", [1, 3])
def test_probe_success_closes(failures: int) -> None:
    breaker, clock = make(failures, 10.0)
    trip(breaker)
    clock.advance(10)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CLOSED
    assert breaker.snapshot() == {"state": "closed", "consecutive_failures": 0, "opened_at": None, "retry_in_s": 0.0}
    assert all(breaker.allow() for _ in range(10))
    fail(breaker, failures - 1)  # a full, fresh count is needed to open again
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN


@pytest.mark.parametrize(
    ("cooldown", "probe_delay", "probe_duration"), [(10.0, 0.0, 3.0), (10.0, 25.0, 9.0), (1.0, 7.5, 0.2)]
)
def test_probe_failure_reopens_with_a_fresh_cooldown(
    cooldown: float, probe_delay: float, probe_duration: float
) -> None:
    breaker, clock = make(2, cooldown)
    trip(breaker)
    first_opening = clock.now
    clock.advance(cooldown + probe_delay)
    assert breaker.allow()
    clock.advance(probe_duration)
    breaker.record_failure()
    failed_at = clock.now
    assert breaker.state is OPEN
    snap = breaker.snapshot()
    assert snap["opened_at"] == failed_at != first_opening
    assert snap["retry_in_s"] == pytest.approx(cooldown)
    clock.advance(cooldown * 0.99)
    assert not breaker.allow()  # measured from the probe failure, not the first opening
    clock.now = failed_at + cooldown
    assert breaker.state is HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()


def test_release_frees_the_probe_slot() -> None:
    breaker, clock = make(2, 10.0)
    trip(breaker)
    clock.advance(10)
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release()  # e.g. the client cancelled the probe
    assert breaker.state is HALF_OPEN
    assert not breaker.probe_in_flight
    assert breaker.allow()  # the next caller probes, at once
    assert not breaker.allow()
    breaker.record_success()
    assert breaker.state is CLOSED


def test_verdicts_without_a_probe_in_flight_are_ignored() -> None:
    breaker, clock = make(2, 10.0)
    trip(breaker)
    clock.advance(10)
    assert breaker.allow()
    breaker.release()
    breaker.record_failure()  # no probe in flight: a late verdict, ignored
    breaker.record_success()
    assert breaker.state is HALF_OPEN
    assert breaker.allow()


# --------------------------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("", {"state": "closed", "consecutive_failures": 0, "opened_at": None, "retry_in_s": 0.0}),
        ("F", {"state": "closed", "consecutive_failures": 1, "opened_at": None, "retry_in_s": 0.0}),
        ("FF", {"state": "closed", "consecutive_failures": 2, "opened_at": None, "retry_in_s": 0.0}),
        ("FFS", {"state": "closed", "consecutive_failures": 0, "opened_at": None, "retry_in_s": 0.0}),
        ("FFF", {"state": "open", "consecutive_failures": 3, "opened_at": 1000.0, "retry_in_s": 10.0}),
        ("FFF+4", {"state": "open", "consecutive_failures": 3, "opened_at": 1000.0, "retry_in_s": 6.0}),
        ("FFF+10", {"state": "half_open", "consecutive_failures": 3, "opened_at": 1000.0, "retry_in_s": 0.0}),
        ("FFF+12P", {"state": "half_open", "consecutive_failures": 3, "opened_at": 1000.0, "retry_in_s": 0.0}),
        ("FFF+12PF", {"state": "open", "consecutive_failures": 4, "opened_at": 1012.0, "retry_in_s": 10.0}),
        ("FFF+12PF+3", {"state": "open", "consecutive_failures": 4, "opened_at": 1012.0, "retry_in_s": 7.0}),
        ("FFF+12PR", {"state": "half_open", "consecutive_failures": 3, "opened_at": 1000.0, "retry_in_s": 0.0}),
        ("FFF+12PS", {"state": "closed", "consecutive_failures": 0, "opened_at": None, "retry_in_s": 0.0}),
    ],
)
def test_snapshot(script: str, expected: dict[str, object]) -> None:
    """F/S: an allowed call that fails/succeeds; P: allow() a probe; F/S/R after P: the probe's verdict or
    release; +N: the clock advances N seconds."""
    breaker, clock = make(3, 10.0)
    i = 0
    while i < len(script):
        op = script[i]
        i += 1
        if op == "+":
            digits = ""
            while i < len(script) and script[i].isdigit():
                digits += script[i]
                i += 1
            clock.advance(float(digits))
        elif op == "P" or (op in "FS" and not breaker.probe_in_flight):
            assert breaker.allow()
        if op == "F":
            breaker.record_failure()
        elif op == "S":
            breaker.record_success()
        elif op == "R":
            breaker.release()
    assert breaker.snapshot() == expected
    assert breaker.retry_in_s == expected["retry_in_s"]
    assert breaker.state.value == expected["state"]


@pytest.mark.parametrize(("failures", "cooldown"), [(0, 1.0), (-1, 1.0), (1, -0.1), (1, math.nan)])
def test_rejects_bad_settings(failures: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures, cooldown)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 1.0).configure(failures, cooldown)


def test_zero_cooldown_probes_at_once() -> None:
    breaker, _ = make(1, 0.0)
    fail(breaker)
    assert breaker.state is HALF_OPEN
    assert breaker.snapshot()["opened_at"] == 1000.0
    assert breaker.allow()
    assert not breaker.allow()
    breaker.record_failure()
    assert breaker.allow()


def test_default_clock_is_monotonic() -> None:
    breaker = CircuitBreaker(1, 3600.0)
    fail(breaker)
    opened_at = breaker.snapshot()["opened_at"]
    assert isinstance(opened_at, float)
    assert 0.0 < breaker.retry_in_s <= 3600.0


# ---------------------------------------------------------------------------------------------- registry


def test_registry_reuses_breakers_per_label() -> None:
    clock = FakeClock()
    registry = CircuitRegistry(clock)
    a = registry.get("openai/gpt-4o@eu", 2, 10.0)
    assert registry.get("openai/gpt-4o@eu", 2, 10.0) is a
    b = registry.get("openai/gpt-4o@us", 2, 10.0)
    assert b is not a
    fail(a, 2)
    assert a.state is OPEN
    assert b.state is CLOSED
    assert registry.get("openai/gpt-4o@eu", 2, 10.0).state is OPEN
    assert len(registry) == 2
    assert registry.snapshot() == {
        "openai/gpt-4o@eu": {"state": "open", "consecutive_failures": 2, "opened_at": 1000.0, "retry_in_s": 10.0},
        "openai/gpt-4o@us": {"state": "closed", "consecutive_failures": 0, "opened_at": None, "retry_in_s": 0.0},
    }


@pytest.mark.parametrize(
    ("new_failures", "new_cooldown", "still_open_at_5s", "opens_after"),
    [(2, 10.0, True, 2), (5, 10.0, True, 5), (2, 4.0, False, 2), (1, 30.0, True, 1)],
)
def test_registry_updates_settings_in_place(
    new_failures: int, new_cooldown: float, still_open_at_5s: bool, opens_after: int
) -> None:
    clock = FakeClock()
    registry = CircuitRegistry(clock)
    breaker = registry.get("dep", 2, 10.0)
    trip(breaker)
    # a config reload: same label, new settings; state survives, the new cooldown applies to the running one
    assert registry.get("dep", new_failures, new_cooldown) is breaker
    assert (breaker.failures, breaker.cooldown_s) == (new_failures, new_cooldown)
    assert breaker.snapshot()["opened_at"] == 1000.0
    clock.advance(5)
    assert (breaker.state is OPEN) is still_open_at_5s
    clock.advance(new_cooldown)
    assert breaker.allow()
    breaker.record_success()
    fail(breaker, opens_after - 1)
    assert breaker.state is CLOSED
    fail(breaker)
    assert breaker.state is OPEN


def test_registry_retain_forgets_removed_labels() -> None:
    registry = CircuitRegistry(FakeClock())
    kept = registry.get("a", 1, 1.0)
    fail(kept)
    registry.get("b", 1, 1.0)
    registry.retain(["a", "c"])
    assert "a" in registry
    assert "b" not in registry
    assert registry.get("a", 1, 1.0) is kept
    assert registry.get("a", 1, 1.0).state is OPEN
    assert list(registry.snapshot()) == ["a"]


# ---------------------------------------------------------------------------------------------- property


@pytest.mark.parametrize("seed", range(20))
def test_always_failing_upstream_allows_at_most_failures_plus_cooldowns(seed: int) -> None:
    """1,000 calls against an upstream that always fails, the clock advancing in random steps: the breaker lets
    through at most `failures` calls plus one probe per elapsed cooldown period (+1 for float slack). A probe may
    stay in flight for several calls (all refused meanwhile) before it fails."""
    rng = random.Random(seed)
    failures = rng.randint(1, 8)
    cooldown = rng.uniform(0.5, 30.0)
    clock = FakeClock(rng.uniform(0.0, 1e6))
    start = clock.now
    breaker = CircuitBreaker(failures, cooldown, clock)
    allowed = 0
    probe_left = -1  # calls until the in-flight probe fails; -1 when none is in flight
    for _ in range(1000):
        clock.advance(rng.choice((0.0, rng.uniform(0.0, cooldown / 10), rng.uniform(0.0, cooldown * 1.5))))
        if probe_left == 0:
            breaker.record_failure()
            probe_left = -1
        elif probe_left > 0:
            probe_left -= 1
        was_closed = breaker.state is CLOSED
        if breaker.allow():
            allowed += 1
            if was_closed:
                breaker.record_failure()
            else:
                assert probe_left == -1, "a second probe while one is in flight"
                probe_left = rng.randint(0, 3)
        snap = breaker.snapshot()
        retry = snap["retry_in_s"]
        assert isinstance(retry, float)
        assert 0.0 <= retry <= cooldown
        assert (snap["state"] == "open") == (retry > 0.0)
        periods = math.floor((clock.now - start) / cooldown)
        assert allowed <= failures + periods + 1
    assert allowed > failures  # the run was long enough to probe at all
