"""`python -m bench --instructions` without valgrind: the command prefix, reading a callgrind dump, the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import instructions, report
from bench.__main__ import parser

DUMP = b"""# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 6106
cmd:  python -m gateway serve
part: 1
events: Ir
summary: 498014780
fn=(1) main
0 5
totals: 539052900
"""


def test_the_server_runs_under_callgrind_writing_into_the_run_folder(tmp_path: Path) -> None:
    wrapper = instructions.callgrind_wrapper(tmp_path)
    assert wrapper[:2] == ["valgrind", "--tool=callgrind"]
    assert f"--callgrind-out-file={tmp_path}/callgrind.%p" in wrapper


def test_the_count_is_the_new_dumps_summary_not_its_totals(tmp_path: Path) -> None:
    old = tmp_path / "callgrind.6106"
    old.write_bytes(DUMP.replace(b"498014780", b"1"))
    (tmp_path / "callgrind.6106.1").write_bytes(DUMP)
    (tmp_path / "callgrind.7000.1").write_bytes(DUMP.replace(b"498014780", b"2"))  # another process's
    assert instructions.dumped_instructions(tmp_path, 6106, [old]) == 498_014_780


def test_the_report_gives_both_counts_and_the_ratio() -> None:
    counted = {"requests": 400, "warmup": 300, "run_s": 6.0, "idle_per_s": 900_000}
    lines = report.instructions_lines(
        {
            "floor": {**counted, "per_request": 645_542.0, "gross_per_request": 659_042.0},
            "gateway": {**counted, "per_request": 1_251_702.0, "gross_per_request": 1_265_202.0},
            "ratio": 1_251_702 / 645_542,
        }
    )
    assert "floor 645,542, gateway 1,251,702: gateway/floor 1.94x" in lines[1]
    assert lines[3] == (
        "  gateway: 1,265,202 before its idle rate (900,000 a second idle, 6 s of requests) was taken off"
    )


@pytest.mark.parametrize(("argv", "on"), [([], False), (["--instructions"], True)])
def test_the_mode_is_asked_on_the_command_line(argv: list[str], on: bool) -> None:
    assert parser().parse_args(argv).instructions is on
