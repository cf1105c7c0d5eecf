"""The rest of `python -m bench --profile` that needs no server: py-spy's command line and summary, the check
that it is installed, the default sampling time, the printed table and where the stacks are written."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import pyspy, report
from bench.__main__ import parser, settings_from
from bench.stacks import rows_of


def test_pyspy_records_the_pid_raw_nonblocking_at_250_per_second() -> None:
    command = pyspy.command(1752, 15.4, Path("/tmp/x/gateway.folded"))
    assert command[0].endswith("/py-spy")
    assert command[1:] == [
        "record",
        "-p",
        "1752",
        "-d",
        "15",
        "-r",
        "250",
        "-f",
        "raw",
        "--nonblocking",
        "-o",
        "/tmp/x/gateway.folded",
    ]


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (
            "py-spy> Sampling process 250 times a second for 6 seconds. Press Control-C to exit.\n\n"
            "py-spy> Wrote raw flamegraph data to '/tmp/floor.txt'. Samples: 1372 Errors: 120\n"
            "py-spy> You can use the flamegraph.pl script from https://github.com/brendangregg/flamegraph\n",
            (1372, 120),
        ),
        ("Samples: 3 Errors: 1\nSamples: 3055 Errors: 511\n", (3055, 511)),  # the last one
    ],
)
def test_the_summary_gives_samples_and_errors(log: str, expected: tuple[int, int]) -> None:
    assert pyspy.summary(log) == expected


def test_a_log_without_a_summary_is_an_error() -> None:
    with pytest.raises(ValueError, match="Samples: N Errors: M"):
        pyspy.summary("Error: Permission Denied (os error 13)\n")


def test_without_pyspy_the_run_stops_naming_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(pyspy, "PYSPY", tmp_path / "py-spy")
    with pytest.raises(SystemExit, match=r"pip install -e '\.\[bench\]'"):
        pyspy.require()


@pytest.mark.parametrize(
    ("argv", "duration_s", "warmup_s"),
    [
        (["--profile"], 20.0, 3.0),
        (["--profile", "--duration", "15s", "--warmup", "5s"], 15.0, 5.0),
        (["--profile", "--quick"], 3.0, 1.0),
        (["--breakdown"], 8.0, 3.0),
        ([], 8.0, 3.0),
    ],
)
def test_profile_samples_for_20_seconds_unless_told(argv: list[str], duration_s: float, warmup_s: float) -> None:
    settings = settings_from(parser().parse_args(argv))
    assert (settings.duration_s, settings.warmup_s) == (duration_s, warmup_s)


def server(cpu_us: float, samples: dict[str, int]) -> dict[str, object]:
    total = sum(samples.values())
    return {
        "name": "x",
        "server_cpu_us_per_request": cpu_us,
        "wrk": {"rps": 2000.0, "duration_s": 15.0, "cpu_s": {"server": 14.25}, "foreign": [["valgrind", 6.0]]},
        "pyspy": {"samples": total, "errors": total // 4, "pyspy_cpu_s": 1.5, "rate_hz": 250, "duration_s": 15.0},
        "samples": samples,
        "samples_total": total,
        "samples_cut": total // 2,
        "unattributed_leaves": [["(no Python frame)", samples.get("unattributed", 0)]],
    }


def test_the_report_prints_the_table_and_each_servers_summary() -> None:
    servers = {
        "floor": server(400.0, {"uvicorn": 60, "upstream client": 40}),
        "gateway": server(1000.0, {"uvicorn": 20, "upstream client": 30, "gateway: auth": 40, "unattributed": 10}),
    }
    profile = {
        "connections": 128,
        "upstream_delay_ms": 50,
        "rate_hz": 250,
        "servers": servers,
        "rows": [row.as_dict() for row in rows_of(servers)],
    }
    lines = report.profile_lines(profile)
    table = {
        line.split("|")[0].strip(): [cell.strip() for cell in line.split("|")[1:]] for line in lines if "|" in line
    }
    assert table["uvicorn"] == ["60.0", "240", "20.0", "200", "-40"]
    assert table["gateway: auth"] == ["0.0", "0", "40.0", "400", "+400"]
    assert table["unattributed"] == ["0.0", "0", "10.0", "100", "+100"]
    assert table["total"] == ["100.0", "400", "100.0", "1000", "+600"]
    summary = next(line for line in lines if line.startswith("  gateway:"))
    assert "CPU 1000 µs/request (95% of its CPU)" in summary
    assert "20.0% more dropped" in summary and "50% with a stack cut short" in summary
    assert any("unattributed, by leaf: (no Python frame) 10.0%" in line for line in lines)
    assert any("used 40% of a CPU (valgrind 6.0 s)" in line for line in lines)


def test_the_report_says_when_a_server_was_not_measured() -> None:
    assert report.profile_server_lines("gateway", {"problems": ["json50: 500"]}) == [
        "  gateway: not measured: ['json50: 500']"
    ]


def test_the_stacks_are_written_next_to_the_json_file(tmp_path: Path) -> None:
    result = tmp_path / "2026-11-22T05-10-24Z-profile.json"
    written = report.write_folded(result, {"floor": "a;b 3\n", "gateway": "c 1\n"})
    assert [path.name for path in written] == [
        "2026-11-22T05-10-24Z-profile-floor.folded",
        "2026-11-22T05-10-24Z-profile-gateway.folded",
    ]
    assert written[0].read_text() == "a;b 3\n"


@pytest.mark.parametrize(("steal_s", "noted"), [(0.0, False), (0.3, False), (0.9, True)])
def test_hypervisor_steal_during_a_point_is_noted(steal_s: float, noted: bool) -> None:
    point = {"duration_s": 8.0, "foreign": [], "cpu_s": {"server": 7.5, "steal": steal_s}}
    lines = report.disturbance_lines({"gateway": {"overhead_1c_0ms": point, "capacity_50ms": {}}})
    assert any("steal" in line for line in lines) is noted


def measured(rps: float, p50_ms: float, steal_s: float = 0.0) -> dict[str, object]:
    """A target's record as `measure` writes it, with only what the verdicts read."""
    point = {"duration_s": 8.0, "rps": rps, "p50_ms": p50_ms, "p99_ms": p50_ms * 2, "errors": 0, "non2xx": 0}
    return {
        "overhead_1c_0ms": {**point, "cpu_s": {"steal": steal_s}, "foreign": []},
        "capacity_50ms": {"128": {**point, "cpu_s": {"steal": steal_s}, "foreign": []}},
        "ttft": {"p50_ms": p50_ms, "failures": 0},
        "chunk_separation": {"median": 5.0, "min": 5.0, "failures": 0},
    }


@pytest.mark.parametrize(
    ("floor_steal_s", "gateway_rps", "expected"),
    [(0.0, 900.0, False), (0.0, 1700.0, True), (3.9, 1700.0, None), (3.9, 900.0, None)],
)
def test_the_throughput_target_is_not_judged_on_a_disturbed_run(
    floor_steal_s: float, gateway_rps: float, expected: bool | None
) -> None:
    targets = {
        "direct": measured(2400.0, 0.02),
        "floor": measured(2000.0, 0.3, steal_s=floor_steal_s),
        "gateway": measured(gateway_rps, 0.9),
    }
    (throughput,) = [v for v in report.compare_verdicts(targets) if v["check"] == "throughput 128c/50ms gateway/floor"]
    assert throughput["pass"] is expected
    assert ("not judged" in str(throughput["target"])) is (expected is None)
