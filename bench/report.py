"""What a run prints and keeps: the comparison table, the ratios and targets with PASS/FAIL, the soak, scaling,
breakdown and profile summaries, the versions and the machine, and the JSON file in bench/results/ (with, for
a profile, the collapsed stacks beside it)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.servers import BENCH, REPO, litellm_command
from tests.support.postgres_server import find_bin_dir, tool

RESULTS = BENCH / "results"
PACKAGES = ("uvicorn", "uvloop", "httptools", "aiohttp", "starlette", "redis", "asyncpg", "prometheus_client")
TARGET_THROUGHPUT_RATIO = 0.8  # gateway / floor at 128 connections, 50 ms upstream
TARGET_ADDED_P50_MS = 0.5  # 1 connection, 0 ms upstream, over the direct path
TARGET_ADDED_P99_MS = 1.5
TARGET_ADDED_TTFT_P50_MS = 1.0
TARGET_SOAK_MIB_PER_MIN = 2.0
SOAK_FD_SLACK = 2  # descriptors "back to baseline": at most this many above it
SOAK_TASK_SLACK = 0
POOLS = ("mock", "redis", "postgres")  # descriptors of connection pools: their size follows the load's peaks
FOREIGN_WARNING = 0.05  # other processes using this share of a CPU during a point: the numbers are disturbed

Record = Mapping[str, Any]


# -- versions and machine -------------------------------------------------------------------------------------------


def command_output(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (done.stdout + done.stderr).strip() else ""


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    revision = command_output("git", "rev-parse", "--short", "HEAD")
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    found["gateway"] = revision + (" (uncommitted changes)" if dirty else "")
    found["nginx"] = command_output("nginx", "-v").removeprefix("nginx version: ")
    found["wrk"] = command_output("wrk", "-v").split(" Copyright")[0]
    found["redis"] = command_output("redis-server", "--version").split(" sha=")[0]
    try:
        found["postgres"] = command_output(tool(find_bin_dir(), "postgres"), "--version")
    except RuntimeError:
        found["postgres"] = "not installed"
    litellm = litellm_command()
    found["litellm"] = command_output(*litellm, "--version") if litellm else "not installed"
    return found


def machine() -> dict[str, object]:
    model = next(
        (line.split(":", 1)[1].strip() for line in command_output_all("lscpu") if line.startswith("Model name:")),
        platform.processor() or "unknown",
    )
    memory_kib = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        0,
    )
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "hypervisor": next(
            (line.split(":", 1)[1].strip() for line in command_output_all("lscpu") if "Hypervisor vendor" in line),
            "none",
        ),
    }


def command_output_all(*command: str) -> list[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return []


# -- verdicts --------------------------------------------------------------------------------------------------------


def verdict(check: str, value: str, target: str, passed: bool | None) -> dict[str, object]:
    return {"check": check, "value": value, "target": target, "pass": passed}


def failed_requests(record: Record) -> int:
    return sum(int(p.get("errors", 0)) + int(p.get("non2xx", 0)) for p in points(record))


def compare_verdicts(targets: Mapping[str, Record], paired: Record | None = None) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    pairs = judged_pairs(paired) if paired is not None else []
    by_pairs = len(pairs) >= MIN_JUDGED_PAIRS
    measured = {name: r for name, r in targets.items() if "capacity_50ms" in r}
    for name, record in targets.items():
        if record.get("problems"):
            found.append(verdict(f"{name} answers 200", "; ".join(record["problems"])[:200], "200", False))
        elif name in measured:
            failures = failed_requests(record) + int(record["ttft"]["failures"])
            failures += int(record["chunk_separation"]["failures"])
            found.append(verdict(f"{name}: requests without errors", f"{failures} failed", "0", failures == 0))
    gateway, floor, direct = measured.get("gateway"), measured.get("floor"), measured.get("direct")
    litellm = measured.get("litellm")

    def rps(record: Record) -> float:
        return float(record["capacity_50ms"]["128"]["rps"])

    if gateway and floor:
        ratio = rps(gateway) / rps(floor) if rps(floor) else 0.0
        value = f"{ratio:.2f}x ({rps(gateway):,.0f} / {rps(floor):,.0f} req/s)"
        judged = not (disturbed(gateway) or disturbed(floor)) and not by_pairs
        target = f">= {TARGET_THROUGHPUT_RATIO}x" + ("" if judged else NOT_JUDGED)
        found.append(
            verdict(
                "throughput 128c/50ms gateway/floor",
                value,
                "(reference: judged on the paired rounds)" if by_pairs else target,
                ratio >= TARGET_THROUGHPUT_RATIO if judged else None,
            )
        )
    if paired is not None and paired.get("rounds"):
        found.append(paired_verdict(paired, pairs))
    if gateway and litellm:
        ratio = rps(gateway) / rps(litellm) if rps(litellm) else 0.0
        value = f"{ratio:.2f}x ({rps(gateway):,.0f} / {rps(litellm):,.0f} req/s)"
        found.append(verdict("throughput 128c/50ms gateway/LiteLLM", value, "(no target)", None))
    if direct:
        for name, record in measured.items():
            if name == "direct":
                continue
            p50, p99 = added(record, direct, "p50_ms"), added(record, direct, "p99_ms")
            is_gateway = name == "gateway" and not (disturbed(record) or disturbed(direct))
            if name == "gateway" and not is_gateway:
                found.append(verdict("gateway: latency targets", "-", NOT_JUDGED.strip(), None))
            found.append(
                verdict(
                    f"{name}: added latency 1c/0ms p50",
                    f"{p50:.3f} ms",
                    f"<= {TARGET_ADDED_P50_MS} ms" if is_gateway else "(reference)",
                    p50 <= TARGET_ADDED_P50_MS if is_gateway else None,
                )
            )
            found.append(
                verdict(
                    f"{name}: added latency 1c/0ms p99",
                    f"{p99:.3f} ms",
                    f"<= {TARGET_ADDED_P99_MS} ms" if is_gateway else "(reference)",
                    p99 <= TARGET_ADDED_P99_MS if is_gateway else None,
                )
            )
            ttft = float(record["ttft"]["p50_ms"]) - float(direct["ttft"]["p50_ms"])
            found.append(
                verdict(
                    f"{name}: added time to first chunk p50",
                    f"{ttft:.3f} ms",
                    f"<= {TARGET_ADDED_TTFT_P50_MS} ms" if is_gateway else "(reference)",
                    ttft <= TARGET_ADDED_TTFT_P50_MS if is_gateway else None,
                )
            )
            expected = float(direct["chunk_separation"]["median"])
            got = record["chunk_separation"]
            found.append(
                verdict(
                    f"{name}: chunks not batched (separate arrivals)",
                    f"median {got['median']:g}, min {got['min']:g}",
                    f"{expected:g} (direct)",
                    float(got["median"]) >= expected,
                )
            )
    return found


MIN_JUDGED_PAIRS = 3  # undisturbed paired rounds needed to judge the throughput target on them


def pair_ratio(pair: Record) -> float:
    floor = float(pair["floor"]["rps"])
    return float(pair["gateway"]["rps"]) / floor if floor else 0.0


def cpu_ms_per_request(point: Record) -> float:
    return 1e3 * float(point["server_cpu_s"]) / int(point["requests"]) if point.get("requests") else 0.0


def judged_pairs(paired: Record) -> list[Record]:
    """The paired rounds in which neither point was disturbed (steal or other processes)."""
    return [pair for pair in paired.get("rounds", []) if not any(point_disturbed(p) for p in pair.values())]


def paired_verdict(paired: Record, pairs: Sequence[Record]) -> dict[str, object]:
    count = len(paired["rounds"])
    if len(pairs) < MIN_JUDGED_PAIRS:
        return verdict(
            "throughput 128c/50ms gateway/floor, paired rounds",
            f"{len(pairs)} of {count} rounds undisturbed",
            f">= {TARGET_THROUGHPUT_RATIO}x (not judged: fewer than {MIN_JUDGED_PAIRS} undisturbed rounds)",
            None,
        )
    ratios = sorted(pair_ratio(pair) for pair in pairs)
    median = statistics.median(ratios)
    value = f"{median:.2f}x (median of {len(pairs)}/{count} rounds, {ratios[0]:.2f}-{ratios[-1]:.2f}x)"
    return verdict(
        "throughput 128c/50ms gateway/floor, paired rounds",
        value,
        f">= {TARGET_THROUGHPUT_RATIO}x",
        median >= TARGET_THROUGHPUT_RATIO,
    )


def paired_lines(paired: Record) -> list[str]:
    if paired.get("problems"):
        return [f"paired rounds: not run, {paired['problems']}"]
    lines = [
        f"paired rounds: floor and gateway alternating at {paired['connections']} connections, "
        f"{paired['upstream_delay_ms']} ms upstream ({paired['duration_s']:g} s each after {paired['warmup_s']:g} s "
        "warm-up, the order swapped every round; the other server idles on the same CPU)"
    ]
    rows: list[Sequence[str]] = [
        ("round", "floor req/s", "floor ms/req", "gateway req/s", "gateway ms/req", "ratio", "idle peer", "disturbed")
    ]
    for index, pair in enumerate(paired["rounds"], 1):
        floor, gateway = pair["floor"], pair["gateway"]
        peer = max(float((p.get("cpu_s") or {}).get("idle peer", 0.0)) / p["duration_s"] for p in pair.values())
        worst = max(max(point_foreign(p), point_steal(p)) for p in pair.values())
        rows.append(
            (
                str(index),
                f"{floor['rps']:,.0f}",
                f"{cpu_ms_per_request(floor):.3f}",
                f"{gateway['rps']:,.0f}",
                f"{cpu_ms_per_request(gateway):.3f}",
                f"{pair_ratio(pair):.2f}x",
                f"{100 * peer:.1f}%",
                f"{100 * worst:.0f}% of a CPU" if worst >= FOREIGN_WARNING else "",
            )
        )
    lines.extend(render(rows))
    pairs = judged_pairs(paired)
    if pairs:
        floor_ms = statistics.median(cpu_ms_per_request(pair["floor"]) for pair in pairs)
        gateway_ms = statistics.median(cpu_ms_per_request(pair["gateway"]) for pair in pairs)
        lines.append(
            f"undisturbed rounds: {len(pairs)}; median ratio {statistics.median(pair_ratio(p) for p in pairs):.2f}x; "
            f"CPU a request, medians: gateway {gateway_ms:.3f} ms, floor {floor_ms:.3f} ms "
            f"({gateway_ms / floor_ms if floor_ms else 0:.2f}x)"
        )
    return lines


NOT_JUDGED = " (not judged: steal or other processes took >= 5% of a CPU)"


def disturbed(record: Record) -> bool:
    """A target's numbers are not judged against the targets when the machine was busy with something else."""
    return foreign_share(record) >= FOREIGN_WARNING or steal_share(record) >= FOREIGN_WARNING


def added(record: Record, direct: Record, key: str) -> float:
    return float(record["overhead_1c_0ms"][key]) - float(direct["overhead_1c_0ms"][key])


def soak_verdicts(soak: Record) -> list[dict[str, object]]:
    if soak.get("problems"):
        return [verdict("soak: gateway answers 200", "; ".join(soak["problems"])[:200], "200", False)]
    found = []
    growth = soak.get("rss_growth_mib_per_min")
    found.append(
        verdict(
            "soak: RSS growth after warm-up",
            "too few samples" if growth is None else f"{growth:.3f} MiB/min",
            f"<= {TARGET_SOAK_MIB_PER_MIN} MiB/min",
            None if growth is None else growth <= TARGET_SOAK_MIB_PER_MIN,
        )
    )
    before, after = soak["before"], soak["after"]

    def own(reading: Record) -> int:
        return sum(n for kind, n in reading["fds_by_kind"].items() if kind not in POOLS)

    def pooled(reading: Record) -> int:
        return sum(n for kind, n in reading["fds_by_kind"].items() if kind in POOLS)

    found.append(
        verdict(
            "soak: descriptors (pools aside) back to baseline",
            f"{own(before)} -> {own(after)}",
            f"<= baseline + {SOAK_FD_SLACK}",
            own(after) <= own(before) + SOAK_FD_SLACK,
        )
    )
    found.append(
        verdict(
            "soak: pooled connections (mock, Redis, Postgres)",
            f"{pooled(before)} -> {pooled(after)}",
            "(bounded by the pools)",
            None,
        )
    )
    tasks_known = before["asyncio_tasks"] is not None and after["asyncio_tasks"] is not None
    found.append(
        verdict(
            "soak: asyncio tasks back to baseline",
            f"{number(before['asyncio_tasks'])} -> {number(after['asyncio_tasks'])}",
            "<= baseline",
            after["asyncio_tasks"] <= before["asyncio_tasks"] + SOAK_TASK_SLACK if tasks_known else None,
        )
    )
    failed = int(soak["wrk"]["errors"]) + int(soak["wrk"]["non2xx"])
    found.append(verdict("soak: requests without errors", f"{failed} failed", "0", failed == 0))
    return found


# -- printing --------------------------------------------------------------------------------------------------------


def mib(kib: object) -> str:
    return f"{int(kib) / 1024:.0f}" if isinstance(kib, int) and kib else "-"


def point(p: Record | None) -> str:
    if not p:
        return "-"
    return f"{p['rps']:,.0f} ({p['p50_ms']:.1f}/{p['p99_ms']:.1f})"


def compare_table(targets: Mapping[str, Record]) -> list[str]:
    header = (
        "path",
        "1c/0ms p50/p99 ms",
        "added p50/p99 ms",
        "1c/50ms req/s (p50/p99)",
        "32c/50ms req/s (p50/p99)",
        "128c/50ms req/s (p50/p99)",
        "server CPU @128",
        "TTFT p50/p99 ms",
        "+TTFT p50",
        "chunks",
        "RSS MiB idle/load/after",
        "failed",
        "others' CPU",
    )
    rows: list[Sequence[str]] = [header]
    direct = targets.get("direct") if "capacity_50ms" in targets.get("direct", {}) else None
    for name, record in targets.items():
        if record.get("skipped"):
            rows.append((name, f"skipped: {record['skipped']}", *[""] * (len(header) - 2)))
            continue
        if "capacity_50ms" not in record:
            rows.append((name, "not measured (see the problems below)", *[""] * (len(header) - 2)))
            continue
        overhead, capacity, ttft = record["overhead_1c_0ms"], record["capacity_50ms"], record["ttft"]
        is_direct = name == "direct"
        extra = "-"
        plus_ttft = "-"
        if direct is not None and not is_direct:
            extra = f"{added(record, direct, 'p50_ms'):+.3f}/{added(record, direct, 'p99_ms'):+.3f}"
            plus_ttft = f"{float(ttft['p50_ms']) - float(direct['ttft']['p50_ms']):+.3f}"
        top = capacity["128"]
        cpu = "-"
        if not is_direct and top["duration_s"] and top["requests"]:
            per_request = 1000 * top["server_cpu_s"] / top["requests"]
            cpu = f"{100 * top['server_cpu_s'] / top['duration_s']:.0f}% ({per_request:.2f} ms/req)"
        separation = record["chunk_separation"]
        rss = (
            "-"
            if is_direct
            else "/".join(mib(record.get(k)) for k in ("rss_idle_kib", "rss_load_kib", "rss_after_kib"))
        )
        rows.append(
            (
                name + (f" (w{record['workers']})" if record.get("workers", 1) != 1 else ""),
                f"{overhead['p50_ms']:.3f}/{overhead['p99_ms']:.3f}",
                extra,
                point(capacity.get("1")),
                point(capacity.get("32")),
                point(capacity.get("128")),
                cpu,
                f"{ttft['p50_ms']:.3f}/{ttft['p99_ms']:.3f}",
                plus_ttft,
                f"{separation['median']:g} (min {separation['min']:g})",
                rss,
                str(failed_requests(record) + int(ttft["failures"]) + int(separation["failures"])),
                f"{100 * foreign_share(record):.0f}%",
            )
        )
    return render(rows)


def points(record: Record) -> list[Record]:
    return [record.get("overhead_1c_0ms") or {}, *(record.get("capacity_50ms") or {}).values()]


def point_foreign(point: Record) -> float:
    """The CPU that processes the harness did not start used during one wrk point, as a share of one CPU."""
    return sum(s for _, s in point.get("foreign", [])) / point["duration_s"] if point.get("duration_s") else 0.0


def point_steal(point: Record) -> float:
    """The CPU time the hypervisor gave to other guests (steal) during one wrk point, as a share of one CPU: on a
    virtual machine, neighbours disturb the numbers without any process showing it."""
    return (point.get("cpu_s") or {}).get("steal", 0.0) / point["duration_s"] if point.get("duration_s") else 0.0


def point_disturbed(point: Record) -> bool:
    return point_foreign(point) >= FOREIGN_WARNING or point_steal(point) >= FOREIGN_WARNING


def foreign_share(record: Record) -> float:
    """The most CPU that processes the harness did not start used during one of the target's points."""
    return max((point_foreign(p) for p in points(record)), default=0.0)


def steal_share(record: Record) -> float:
    """The most steal during one of the target's points."""
    return max((point_steal(p) for p in points(record)), default=0.0)


def render(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append(" | ".join(cells).rstrip())
        if index == 0:
            lines.append("-+-".join("-" * width for width in widths))
    return lines


def disturbance_lines(targets: Mapping[str, Record]) -> list[str]:
    lines = []
    for name, record in targets.items():
        share = foreign_share(record)
        if share >= FOREIGN_WARNING:
            busiest: dict[str, float] = {}
            for p in points(record):
                for process, seconds in p.get("foreign", []):
                    busiest[process] = busiest.get(process, 0.0) + seconds
            top = ", ".join(f"{n} {s:.1f} s" for n, s in sorted(busiest.items(), key=lambda item: -item[1])[:3])
            lines.append(
                f"  note: while {name} was measured, processes the harness did not start used up to "
                f"{100 * share:.0f}% of a CPU ({top}): its numbers are disturbed"
            )
        steal = steal_share(record)
        if steal >= FOREIGN_WARNING:
            lines.append(
                f"  note: while {name} was measured, the hypervisor gave up to {100 * steal:.0f}% of a CPU to other "
                "guests (steal): its numbers are disturbed"
            )
    return lines


def verdict_lines(verdicts: Sequence[Record]) -> list[str]:
    rows: list[Sequence[str]] = [("check", "measured", "target", "")]
    for v in verdicts:
        mark = {True: "PASS", False: "FAIL", None: "info"}[v["pass"]]
        rows.append((str(v["check"]), str(v["value"]), str(v["target"]), mark))
    return render(rows)


def number(value: object) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def soak_lines(soak: Record) -> list[str]:
    if soak.get("problems"):
        return [f"soak: not run, the gateway does not answer as expected: {soak['problems']}"]
    wrk = soak["wrk"]
    lines = [
        f"soak: {soak['duration_s']:g} s, {soak['connections']} connections, 50 ms upstream: {wrk['rps']:,.0f} req/s, "
        f"p50 {wrk['p50_ms']:.1f} ms, p99 {wrk['p99_ms']:.1f} ms, {wrk['requests']:,} requests",
    ]
    for label in ("idle", "before", "after"):
        r = soak[label]
        kinds = ", ".join(f"{kind} {count}" for kind, count in r.get("fds_by_kind", {}).items())
        lines.append(
            f"  {label:6} RSS {r['rss_kib'] / 1024:7.1f} MiB  fds {r['fds']:4} ({kinds})  asyncio tasks "
            f"{number(r['asyncio_tasks'])}  event queue {number(r['event_queue_depth'])}"
        )
    samples = soak["rss_samples"]
    if samples:
        lines.append(
            f"  RSS {samples[0][1] / 1024:.1f} -> {samples[-1][1] / 1024:.1f} MiB over the run "
            f"({len(samples)} samples; slope fitted after the first {soak['warmup_s']:.0f} s)"
        )
    return lines


def scaling_lines(scaling: Record) -> list[str]:
    runs = scaling["runs"]
    lines = [
        f"workers scaling: {scaling['connections']} connections, 50 ms upstream, {scaling['cpus']} CPUs, nothing pinned"
    ]
    groups: list[str] = []
    for run in runs.values():
        groups.extend(name for name in run.get("wrk", {}).get("cpu_s", {}) if name not in groups)
    labels = {"server": "gateway"}
    rows: list[Sequence[str]] = [
        ("workers", "req/s", "per worker", "p50/p99 ms", *[f"{labels.get(g, g)} %" for g in groups])
    ]
    one = runs.get("1", {}).get("wrk", {}).get("rps")
    for key, run in runs.items():
        if "wrk" not in run:
            rows.append((key, "not measured", *[""] * (len(rows[0]) - 2)))
            continue
        wrk = run["wrk"]
        per_worker = wrk["rps"] / run["workers"]
        versus = f" ({per_worker / one:.2f}x)" if one else ""
        capacity = run["capacity_cpu_s"]
        rows.append(
            (
                key,
                f"{wrk['rps']:,.0f}",
                f"{per_worker:,.0f}{versus}",
                f"{wrk['p50_ms']:.1f}/{wrk['p99_ms']:.1f}",
                *[f"{100 * wrk['cpu_s'].get(g, 0.0) / capacity:.0f}" for g in groups],
            )
        )
    lines.extend(render(rows))
    lines.append("  (CPU columns: share of the machine's CPU time during the measured run; idle and steal included)")
    for key, run in runs.items():
        wrk = run.get("wrk", {})
        share = (
            sum(seconds for _, seconds in wrk.get("foreign", [])) / wrk["duration_s"] if wrk.get("duration_s") else 0
        )
        if share >= FOREIGN_WARNING:
            top = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in wrk["foreign"][:3])
            lines.append(
                f"  note: during the {key}-worker run, processes the harness did not start used {100 * share:.0f}% "
                f"of a CPU ({top}): its numbers are disturbed"
            )
    return lines


def header_lines(result: Record) -> list[str]:
    v, m = result["versions"], result["machine"]
    return [
        f"machine: {m['cpu']}, {m['nproc']} CPUs, {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"hypervisor {m['hypervisor']}",
        "versions: " + ", ".join(f"{name} {value}" for name, value in v.items()),
    ]


def breakdown_lines(breakdown: Record) -> list[str]:
    lines = [
        f"server CPU per request, {breakdown['connections']} connections, {breakdown['upstream_delay_ms']} ms upstream"
        " (each step adds to the one above)",
        f"  {'step':56} {'req/s':>8} {'CPU µs/req':>11} {'added':>8}",
    ]
    previous = None
    for step in breakdown["steps"]:
        if "problems" in step:
            lines.append(f"  {step['step']:56} not measured: {step['problems']}")
            continue
        cost = step["server_cpu_us_per_request"]
        added = "" if previous is None or cost is None else f"{cost - previous:+8.0f}"
        lines.append(f"  {step['step']:56} {step['wrk']['rps']:8.1f} {cost:11.0f} {added:>8}")
        previous = cost
    return lines


def microseconds(value: object, signed: bool = False) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:+.0f}" if signed else f"{value:.0f}"


def profile_table(rows: Sequence[Record]) -> list[str]:
    table: list[Sequence[str]] = [
        ("component", "floor %", "floor µs/req", "gateway %", "gateway µs/req", "gw − floor µs")
    ]
    for row in rows:
        table.append(
            (
                str(row["component"]),
                f"{100 * row['floor_share']:.1f}",
                microseconds(row["floor_us_per_request"]),
                f"{100 * row['gateway_share']:.1f}",
                microseconds(row["gateway_us_per_request"]),
                microseconds(row["difference_us_per_request"], signed=True),
            )
        )
    return render(table)


def profile_server_lines(name: str, server: Record) -> list[str]:
    if "problems" in server:
        return [f"  {name}: not measured: {server['problems']}"]
    wrk, spy = server["wrk"], server["pyspy"]
    total = server["samples_total"] or 1
    busy = wrk["cpu_s"].get("server", 0.0) / wrk["duration_s"] if wrk["duration_s"] else 0.0
    dropped = spy["errors"] / (spy["samples"] + spy["errors"]) if spy["samples"] + spy["errors"] else 0.0
    lines = [
        f"  {name}: {wrk['rps']:,.0f} req/s, CPU {microseconds(server['server_cpu_us_per_request'])} µs/request "
        f"({100 * busy:.0f}% of its CPU); {server['samples_total']:,} samples, {100 * dropped:.1f}% more dropped "
        f"(unreadable), {100 * server['samples_cut'] / total:.0f}% with a stack cut short"
    ]
    leaves = server.get("unattributed_leaves") or []
    if leaves:
        shown = ", ".join(f"{leaf} {100 * count / total:.1f}%" for leaf, count in leaves[:3])
        lines.append(f"    unattributed, by leaf: {shown}")
    foreign = sum(seconds for _, seconds in wrk.get("foreign", [])) / wrk["duration_s"] if wrk["duration_s"] else 0.0
    if foreign >= FOREIGN_WARNING:
        top = ", ".join(f"{n} {s:.1f} s" for n, s in wrk["foreign"][:3])
        lines.append(f"    note: processes the harness did not start used {100 * foreign:.0f}% of a CPU ({top})")
    return lines


def instructions_lines(counts: Record) -> list[str]:
    floor, gateway = counts["floor"], counts["gateway"]
    return [
        f"instructions a request (callgrind, 1 connection, 0 ms upstream, {gateway['requests']} requests after "
        f"{gateway['warmup']} of warm-up):",
        f"  floor {floor['per_request']:,.0f}, gateway {gateway['per_request']:,.0f}: gateway/floor "
        f"{counts['ratio']:.2f}x (a throughput of 0.8x the floor's needs at most 1.25x)",
        *(
            f"  {name}: {c['gross_per_request']:,.0f} before its idle rate ({c['idle_per_s']:,.0f} a second idle, "
            f"{c['run_s']:g} s of requests) was taken off"
            for name, c in (("floor", floor), ("gateway", gateway))
            if "gross_per_request" in c
        ),
    ]


def profile_lines(profile: Record) -> list[str]:
    lines = [
        f"where the CPU goes: py-spy at {profile['rate_hz']} samples/s, {profile['connections']} connections, "
        f"{profile['upstream_delay_ms']} ms upstream; a sample goes to the innermost frame of a known component, "
        "µs/req = share × the server's CPU per request"
    ]
    lines.extend(profile_table(profile["rows"]))
    for name, server in profile["servers"].items():
        lines.extend(profile_server_lines(name, server))
    return lines


def write_folded(json_path: Path, folded: Mapping[str, str]) -> list[Path]:
    """Each server's collapsed stacks next to the JSON file: `<its stem>-<server>.folded` (speedscope.app and
    flamegraph.pl read them)."""
    paths = []
    for name, text in folded.items():
        path = json_path.with_name(f"{json_path.stem}-{name}.folded")
        path.write_text(text)
        paths.append(path)
    return paths


def print_report(result: Record) -> None:
    lines: list[str] = [""]
    settings = result["settings"]
    quick = "quick, " if settings["quick"] else ""
    pinning = "" if result["modes"] == ["scaling"] else "; server under test on CPU 1, load and mock on CPU 0"
    lines.append(
        f"gateway benchmark {result['date']}, {' + '.join(result['modes'])} ({quick}{settings['duration_s']:g} s per "
        f"point, {settings['warmup_s']:g} s warm-up{pinning})"
    )
    lines.extend(header_lines(result))
    if "compare" in result:
        lines.append("")
        lines.extend(compare_table(result["compare"]["targets"]))
        for name, record in result["compare"]["targets"].items():
            for problem in record.get("problems", []):
                lines.append(f"  {name}: {problem}")
        lines.extend(disturbance_lines(result["compare"]["targets"]))
        if "paired" in result["compare"]:
            lines.append("")
            lines.extend(paired_lines(result["compare"]["paired"]))
    sections: tuple[tuple[str, Callable[[Record], list[str]]], ...] = (
        ("soak", soak_lines),
        ("scaling", scaling_lines),
        ("breakdown", breakdown_lines),
        ("profile", profile_lines),
        ("instructions", instructions_lines),
    )
    for mode, section in sections:
        if mode in result:
            lines.append("")
            lines.extend(section(result[mode]))
    if result["verdicts"]:
        lines.append("")
        lines.extend(verdict_lines(result["verdicts"]))
    failed = [v["check"] for v in result["verdicts"] if v["pass"] is False]
    if any("without errors" in str(check) or "answers 200" in str(check) for check in failed):
        lines.append("")
        lines.append("WARNING: this run had failed requests; its numbers are not comparable.")
    lines.append("")
    print("\n".join(lines))


def write_json(result: Record, quick: bool) -> Path:
    """bench/results/<UTC date-time>-<mode>.json (a --quick smoke run goes to bench/results/tmp/, not tracked)."""
    folder = RESULTS / "tmp" if quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.fromisoformat(str(result["date"])).strftime("%Y-%m-%dT%H-%M-%SZ")
    path = folder / f"{stamp}-{'-'.join(result['modes'])}.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    return path


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
