"""The paired rounds of `python -m bench` (floor and gateway alternating at 128 connections): how their ratio is
judged and printed, from records shaped as `bench.runs.paired` writes them; and the rounds asked on the command line."""

from __future__ import annotations

import pytest

from bench import report
from bench.__main__ import parser, settings_from
from tests.bench.test_profile_mode import measured

PAIRED_CHECK = "throughput 128c/50ms gateway/floor, paired rounds"
SINGLE_CHECK = "throughput 128c/50ms gateway/floor"


def point(rps: float, cpu_s: float, steal_s: float = 0.0, peer_s: float = 0.0) -> dict[str, object]:
    return {
        "duration_s": 5.0,
        "rps": rps,
        "requests": int(rps * 5),
        "server_cpu_s": cpu_s,
        "foreign": [],
        "cpu_s": {"server": cpu_s, "steal": steal_s, "idle peer": peer_s},
    }


def paired(*rounds: tuple[float, float, float]) -> dict[str, object]:
    """Rounds of (floor req/s, gateway req/s, steal seconds during the gateway's point)."""
    return {
        "connections": 128,
        "upstream_delay_ms": 50,
        "duration_s": 5.0,
        "warmup_s": 1.5,
        "rounds": [
            {"floor": point(floor, 4.0), "gateway": point(gateway, 4.9, steal_s=steal)}
            for floor, gateway, steal in rounds
        ],
    }


TARGETS = {"floor": measured(2000.0, 0.3), "gateway": measured(1700.0, 0.9)}  # 0.85x in the long points


@pytest.mark.parametrize(
    ("rounds", "expected", "value"),
    [
        ([(2000, 1500, 0), (2000, 1400, 0), (2000, 1600, 0)], False, "0.75x (median of 3/3 rounds, 0.70-0.80x)"),
        ([(2000, 1700, 0), (2000, 1600, 0), (2000, 1800, 0), (1000, 100, 2.0)], True, "0.85x (median of 3/4 rounds"),
        ([(2000, 1700, 0), (2000, 1700, 2.0), (2000, 1700, 0)], None, "2 of 3 rounds undisturbed"),
    ],
)
def test_the_median_of_the_undisturbed_pairs_is_judged(
    rounds: list[tuple[float, float, float]], expected: bool | None, value: str
) -> None:
    verdicts = report.compare_verdicts(TARGETS, paired(*rounds))
    (pairs,) = [v for v in verdicts if v["check"] == PAIRED_CHECK]
    assert pairs["pass"] is expected
    assert str(pairs["value"]).startswith(value)
    (single,) = [v for v in verdicts if v["check"] == SINGLE_CHECK]
    if expected is None:  # too few rounds to judge on: the long points are judged as before
        assert single["pass"] is True
    else:
        assert single["pass"] is None
        assert "paired rounds" in str(single["target"])


def test_without_paired_rounds_the_long_points_are_judged() -> None:
    verdicts = report.compare_verdicts(TARGETS)
    assert [v["pass"] for v in verdicts if v["check"] == SINGLE_CHECK] == [True]
    assert not [v for v in verdicts if v["check"] == PAIRED_CHECK]


def test_the_rounds_are_printed_with_their_ratio_cpu_and_disturbance() -> None:
    lines = report.paired_lines(paired((2000, 1500, 0), (2000, 1000, 2.0), (2000, 1600, 0)))
    text = "\n".join(lines)
    assert "0.75x" in text and "0.50x" in text and "40% of a CPU" in text
    assert "0.400" in text  # the floor's CPU a request, in ms: 4.0 s over 10,000 requests
    assert lines[-1].startswith("undisturbed rounds: 2; median ratio 0.78x")


@pytest.mark.parametrize(
    ("argv", "rounds", "duration_s"), [([], 5, 5.0), (["--quick"], 2, 2.0), (["--rounds", "0"], 0, 5.0)]
)
def test_the_rounds_come_from_the_command_line(argv: list[str], rounds: int, duration_s: float) -> None:
    settings = settings_from(parser().parse_args(argv))
    assert (settings.paired_rounds, settings.paired_duration_s) == (rounds, duration_s)
