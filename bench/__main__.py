"""The benchmark harness, one command (from the repository root):

    .venv/bin/python -m bench                      # direct, floor, gateway (+ LiteLLM if installed): ~3 min
    .venv/bin/python -m bench --quick              # the same, short (a smoke run, ~1 min)
    .venv/bin/python -m bench --soak 10m           # the gateway under 32 connections: RSS growth, fds, tasks
    .venv/bin/python -m bench --workers-scaling    # 1 vs 2 workers, nothing pinned, CPU split
    .venv/bin/python -m bench --breakdown          # the gateway's CPU per request, its features on one at a time
    .venv/bin/python -m bench --profile            # floor and gateway under py-spy: CPU per request by component
    .venv/bin/python -m bench --instructions       # floor and gateway under callgrind: instructions per request

--profile needs py-spy (pip install -e '.[bench]') and root; --duration is its sampling time (default 20s).

See bench/README.md for what each part measures and how to read it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Sequence
from types import FrameType, MappingProxyType
from typing import NoReturn

from bench import pyspy, report, slices
from bench.runs import (
    ALL_CPUS,
    LOAD_CPUS,
    TARGETS,
    Lab,
    Settings,
    breakdown,
    compare,
    instruction_counts,
    profile,
    say,
    scaling,
    settings_dict,
    soak,
)
from bench.servers import REPO, ensure_tools

DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
UNITS = MappingProxyType({"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0})


def duration(text: str) -> float:
    match = DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 8s, 10m, 1h)")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def targets(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    return names


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    root.add_argument("--quick", action="store_true", help="short points (3 s, 1 s warm-up), fewer stream requests")
    root.add_argument("--duration", type=duration, help="measured time per point (default 8s; --quick 3s)")
    root.add_argument("--warmup", type=duration, help="warm-up before each point (default 3s; --quick 1s)")
    root.add_argument(
        "--only", type=targets, default=TARGETS, help=f"comma-separated targets among {','.join(TARGETS)}"
    )
    root.add_argument(
        "--rounds",
        type=int,
        help="paired rounds after the comparison: floor and gateway alternating at 128c/50ms (default 5; 0: none)",
    )
    root.add_argument("--ttft-requests", type=int, help="sequential streamed requests per target (default 1000)")
    root.add_argument("--soak", type=duration, metavar="DURATION", help="soak the gateway instead (e.g. 10m)")
    root.add_argument("--workers-scaling", action="store_true", help="gateway with 1 vs 2 workers instead")
    root.add_argument(
        "--breakdown", action="store_true", help="the gateway's CPU per request, its features on one at a time"
    )
    root.add_argument(
        "--profile",
        action="store_true",
        help="floor and gateway under py-spy: CPU per request by component (--duration default 20s)",
    )
    root.add_argument(
        "--instructions",
        action="store_true",
        help="floor and gateway under callgrind: instructions per request at 1c/0ms (repeatable to ~1%%)",
    )
    root.add_argument("--no-install", action="store_true", help="never apt-get install a missing tool")
    root.add_argument("--no-save", action="store_true", help="do not write the JSON file")
    return root


def default_duration(args: argparse.Namespace) -> float:
    """Per point: 3 s with --quick, else 20 s with --profile (py-spy's sampling time), else 8 s."""
    if args.quick:
        return 3.0
    return 20.0 if args.profile else 8.0


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick
    return Settings(
        duration_s=args.duration or default_duration(args),
        warmup_s=args.warmup if args.warmup is not None else (1.0 if quick else 3.0),
        settle_s=2.0 if quick else 3.0,
        ttft_requests=args.ttft_requests or (200 if quick else 1000),
        ttft_warmup=20 if quick else 50,
        slow_requests=5 if quick else 20,
        quick=quick,
        only=args.only,
        paired_rounds=args.rounds if args.rounds is not None else (2 if quick else 5),
        paired_duration_s=2.0 if quick else 5.0,
        paired_warmup_s=1.0 if quick else 1.5,
    )


def interrupted(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if len(ALL_CPUS) < 2:
        say("bench: needs 2 CPUs (the server under test on CPU 1, load and mock on CPU 0)")
        return 2
    settings = settings_from(args)
    if args.profile:
        pyspy.require()
    ensure_tools(install=not args.no_install, valgrind=args.instructions)
    signal.signal(signal.SIGTERM, interrupted)  # the same clean-up as ^C
    # The harness (its streaming client, samplers) and what it starts unpinned run with the load generator.
    os.sched_setaffinity(0, LOAD_CPUS)
    slices.shorten_own_slice()  # wrk, the mock and the streaming client wake up ahead of Postgres (bench/slices.py)
    chosen = (
        ("soak", args.soak),
        ("scaling", args.workers_scaling),
        ("breakdown", args.breakdown),
        ("profile", args.profile),
        ("instructions", args.instructions),
    )
    modes = [m for m, on in chosen if on] or ["compare"]
    result: dict[str, object] = {
        "date": report.now_utc(),
        "modes": modes,
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": settings_dict(settings),
        "versions": report.versions(),
        "machine": report.machine(),
    }
    verdicts: list[dict[str, object]] = []
    folded: dict[str, str] = {}
    try:
        with Lab.open(LOAD_CPUS) as lab:
            if "compare" in modes:
                result["compare"] = outcome = compare(lab, settings)
                verdicts.extend(report.compare_verdicts(outcome["targets"], outcome.get("paired")))  # type: ignore[arg-type]
            if args.soak:
                result["soak"] = soaked = soak(lab, settings, args.soak)
                verdicts.extend(report.soak_verdicts(soaked))
            if args.workers_scaling:
                result["scaling"] = scaling(lab, settings)
            if args.breakdown:
                result["breakdown"] = breakdown(lab, settings)
            if args.instructions:
                result["instructions"] = instruction_counts(lab)
            if args.profile:
                profiled = profile(lab, settings)
                result["profile"], folded = profiled.record, profiled.folded
    except KeyboardInterrupt:
        say("bench: interrupted; every process it started has been stopped")
        return 130
    result["verdicts"] = verdicts
    report.print_report(result)
    if not args.no_save:
        path = report.write_json(result, settings.quick)
        say(f"results: {path.relative_to(REPO)}")
        for stacks_path in report.write_folded(path, folded):
            say(f"stacks:  {stacks_path.relative_to(REPO)} (speedscope.app, flamegraph.pl)")
    return 1 if any(v["pass"] is False for v in verdicts if "without errors" in str(v["check"])) else 0


if __name__ == "__main__":
    raise SystemExit(main())
