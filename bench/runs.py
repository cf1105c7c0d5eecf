"""The runs: the side-by-side comparison (direct, floor, gateway, LiteLLM), the soak, worker scaling, the
breakdown (CPU per request, feature by feature) and the profile (CPU per request, component by component).

Every process lives on the `Lab`'s ExitStack; a target's own processes on a nested one, so each server is
stopped before the next starts (one server under test at a time on its CPU).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from bench import instructions, load, pyspy, stacks
from bench.report import FOREIGN_WARNING
from bench.servers import (
    FEATURES,
    Infra,
    Service,
    Target,
    all_processes_cpu,
    descendants,
    direct_target,
    fds_by_kind,
    litellm_command,
    machine_cpu,
    open_fds,
    pin,
    start_floor,
    start_gateway,
    start_litellm,
    start_mock,
)

SERVER_CPUS = frozenset({1})  # the server under test, all its processes
LOAD_CPUS = frozenset({0})  # wrk, the streaming client (the harness), nginx, Redis, Postgres
ALL_CPUS = frozenset(range(os.cpu_count() or 1))
CONNECTIONS = (1, 32, 128)
TARGETS = ("direct", "floor", "gateway", "litellm")


@dataclass(frozen=True)
class Settings:
    duration_s: float = 8.0
    warmup_s: float = 3.0
    settle_s: float = 3.0  # pause before the "after" readings
    ttft_requests: int = 1000
    ttft_warmup: int = 50
    slow_requests: int = 20
    quick: bool = False
    only: tuple[str, ...] = TARGETS
    paired_rounds: int = 5  # floor and gateway alternating at 128c/50ms after the comparison (0: none)
    paired_duration_s: float = 5.0
    paired_warmup_s: float = 1.5


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def serving(target: Target) -> Iterator[Service]:
    """The started `target`'s service, stopped on the way out (one server under test at a time)."""
    service = target.service
    assert service is not None
    try:
        yield service
    finally:
        service.stop()


@dataclass
class Lab:
    """The run's scratch directory, the mock, and (when the gateway needs them) Redis and Postgres."""

    stack: contextlib.ExitStack
    infra_cpus: frozenset[int]
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gateway-bench-")))
    mock: Service | None = None
    mock_port: int = 0
    bystanders: dict[str, Service] = field(default_factory=dict)  # servers left idle while another is measured
    _infra: Infra | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, infra_cpus: frozenset[int]) -> Iterator[Lab]:
        with contextlib.ExitStack() as stack:
            lab = cls(stack, infra_cpus)
            failed = True
            try:
                lab.mock, lab.mock_port = start_mock(lab.run_dir, infra_cpus)
                stack.callback(lab.mock.stop)
                yield lab
                failed = False
            finally:
                stack.close()  # every process down before the directory goes
                if failed:
                    say(f"bench: logs kept in {lab.run_dir}")
                else:
                    shutil.rmtree(lab.run_dir, ignore_errors=True)

    @property
    def infra(self) -> Infra:
        if self._infra is None:
            say("starting Redis and Postgres")
            self._infra = Infra.start(self.stack, self.infra_cpus)
        return self._infra

    def repin(self, cpus: frozenset[int]) -> None:
        """Moves the mock, Redis and Postgres (every thread) onto `cpus`."""
        if self.mock is not None:
            pin(self.mock.pid, cpus)
        if self._infra is not None:
            self._infra.pin(cpus)
        self.infra_cpus = cpus

    def cpu_groups(self) -> dict[str, list[int]]:
        groups = {"mock (nginx)": descendants(self.mock.pid) if self.mock is not None else []}
        if self._infra is not None:
            groups.update(self._infra.pids())
        for name, service in self.bystanders.items():
            groups[name] = service.pids()
        return groups


# -- comparison ------------------------------------------------------------------------------------------------


def measured_point(
    lab: Lab,
    target: Target,
    kind: str,
    connections: int,
    settings: Settings,
    load_cpus: frozenset[int],
    sample_rss: bool = False,
) -> load.WrkResult:
    """A warm-up, then the measured wrk run (with the server's CPU time and, if asked, its RSS)."""
    url, model = target.url(kind), target.routes[kind].model
    load.run_wrk(url, model, connections, settings.warmup_s, load_cpus)
    service = target.service
    if service is not None:  # the warm-up's last requests, abandoned by its wrk, must not delay the first measured
        service.wait_idle()
    sampler = load.Sampler(lambda: float(service.rss_kib()) if service is not None else 0.0)
    with sampler.running() if sample_rss and service is not None else contextlib.nullcontext():
        result = accounted(
            lab, service, functools.partial(load.run_wrk, url, model, connections, settings.duration_s, load_cpus)
        )
    if sampler.values:
        result.rss_peak_kib, result.rss_mean_kib = int(sampler.peak), int(sampler.mean)
    flag = f", {result.failed} FAILED" if result.failed else ""
    foreign = sum(seconds for _, seconds in result.foreign) / result.duration_s if result.duration_s else 0.0
    steal = result.cpu_s.get("steal", 0.0) / result.duration_s if result.duration_s else 0.0
    busy = f", other processes {100 * foreign:.0f}% of a CPU" if foreign >= FOREIGN_WARNING else ""
    busy += f", steal {100 * steal:.0f}% of a CPU" if steal >= FOREIGN_WARNING else ""
    say(
        f"  {target.name:8} {kind:6} c={connections:<4} {result.rps:9.1f} req/s  p50 {result.p50_ms:8.3f} ms"
        f"  p99 {result.p99_ms:8.3f} ms{flag}{busy}"
    )
    return result


def measure(lab: Lab, target: Target, settings: Settings) -> dict[str, object]:
    """Everything the comparison table shows for one target."""
    say(f"measuring {target.name}")
    record: dict[str, object] = {"name": target.name, "url": target.base_url, **target.extra}
    problems = load.check_answers(target)
    if problems:
        record["problems"] = problems
        say(f"  {target.name} does not answer as expected, not measured: {problems}")
        return record
    service = target.service
    if service is not None:
        record["rss_idle_kib"] = service.rss_kib()
    overhead = measured_point(lab, target, "json0", 1, settings, LOAD_CPUS)
    record["overhead_1c_0ms"] = overhead.as_dict()
    capacity = {}
    for connections in CONNECTIONS:
        point = measured_point(lab, target, "json50", connections, settings, LOAD_CPUS, sample_rss=connections == 128)
        capacity[str(connections)] = point.as_dict()
    record["capacity_50ms"] = capacity
    if service is not None:
        record["rss_load_kib"] = capacity["128"]["rss_peak_kib"]
    stream = load.measure_ttft(target, settings.ttft_requests, settings.ttft_warmup)
    record["ttft"] = {"requests": stream.requests, "failures": stream.failures, **stream.summary()}
    record["ttft_samples_ms"] = [round(v, 4) for v in stream.ttft_ms]
    say(f"  {target.name:8} ttft   p50 {stream.summary()['p50_ms']:.3f} ms  p99 {stream.summary()['p99_ms']:.3f} ms")
    separation = load.measure_separation(target, settings.slow_requests)
    record["chunk_separation"] = {
        "requests": settings.slow_requests,
        "gap_ms": separation.gap_ms,
        "failures": separation.failures,
        "separated": separation.separated,
        **separation.summary(),
    }
    if service is not None:
        time.sleep(settings.settle_s)
        record["rss_after_kib"] = service.rss_kib()
    return record


def pinned_servers(
    lab: Lab, wrapper: Sequence[str] = (), ready_timeout_s: float = 60.0
) -> dict[str, Callable[[], Target]]:
    """Starters of the floor and the gateway (every policy on), each on SERVER_CPUS, `wrapper` in front of their
    commands (valgrind, for --instructions)."""
    return {
        "floor": lambda: start_floor(lab.run_dir, lab.mock_port, SERVER_CPUS, wrapper, ready_timeout_s),
        "gateway": lambda: start_gateway(
            lab.run_dir, lab.mock_port, lab.infra, SERVER_CPUS, wrapper=wrapper, ready_timeout_s=ready_timeout_s
        ),
    }


def run_target(lab: Lab, name: str, settings: Settings) -> dict[str, object] | None:
    starters = pinned_servers(lab)
    if name == "direct":
        return measure(lab, direct_target(lab.mock_port), settings)
    if name == "litellm":
        command = litellm_command()
        if command is None:
            say("litellm is not installed: skipped (the harness does not install it)")
            return {"name": "litellm", "skipped": "not installed"}
        starters["litellm"] = lambda: start_litellm(lab.run_dir, lab.mock_port, SERVER_CPUS, command)
    say(f"starting {name} on CPU {','.join(map(str, sorted(SERVER_CPUS)))}")
    target = starters[name]()
    with serving(target):
        return measure(lab, target, settings)


def compare(lab: Lab, settings: Settings) -> dict[str, object]:
    records = {}
    for name in TARGETS:
        if name in settings.only:
            record = run_target(lab, name, settings)
            if record is not None:
                records[name] = record
    outcome: dict[str, object] = {"targets": records}
    if settings.paired_rounds > 0 and {"floor", "gateway"} <= set(settings.only):
        outcome["paired"] = paired(lab, settings)
    return outcome


PAIRED = ("floor", "gateway")


def paired(lab: Lab, settings: Settings, connections: int = 128) -> dict[str, object]:
    """The floor and the gateway, both started on SERVER_CPUS, measured in alternating short rounds at
    `connections`/50 ms (the order swapped every round): each pair sees the machine within seconds of each other,
    so its ratio is not moved by what drifts over minutes (a neighbour's load, steal, the host's clock). Only one
    is under load at a time; the other idles beside it, and what it uses meanwhile is accounted as "idle peer"."""
    say(f"paired rounds: floor and gateway alternating, {settings.paired_rounds} rounds at {connections} connections")
    short = replace(settings, duration_s=settings.paired_duration_s, warmup_s=settings.paired_warmup_s)
    starters = pinned_servers(lab)
    rounds: list[dict[str, object]] = []
    with contextlib.ExitStack() as servers:
        started: dict[str, Target] = {}
        for name in PAIRED:
            started[name] = target = starters[name]()
            servers.enter_context(serving(target))
            problems = load.check_answers(target)
            if problems:
                say(f"  {name} does not answer as expected, no paired rounds: {problems}")
                return {"problems": {name: problems}}
        try:
            for index in range(settings.paired_rounds):
                pair: dict[str, object] = {}
                for name in PAIRED if index % 2 == 0 else PAIRED[::-1]:
                    (peer,) = (started[other] for other in PAIRED if other != name)
                    assert peer.service is not None
                    lab.bystanders = {"idle peer": peer.service}
                    pair[name] = measured_point(lab, started[name], "json50", connections, short, LOAD_CPUS).as_dict()
                rounds.append(pair)
        finally:
            lab.bystanders = {}
    return {
        "connections": connections,
        "upstream_delay_ms": 50,
        "duration_s": short.duration_s,
        "warmup_s": short.warmup_s,
        "rounds": rounds,
    }


# -- soak --------------------------------------------------------------------------------------------------------


def growth_mib_per_min(samples: list[tuple[float, float]], warmup_s: float) -> float | None:
    """Least-squares slope of RSS (KiB) over time (s) after the warm-up, in MiB per minute."""
    if not samples:
        return None
    start = samples[0][0]
    points = [(t - start, v) for t, v in samples if t - start >= warmup_s]
    if len(points) < 3:
        return None
    slope = statistics.linear_regression([t for t, _ in points], [v for _, v in points]).slope
    return slope * 60 / 1024


def soak(lab: Lab, settings: Settings, duration_s: float, connections: int = 32) -> dict[str, object]:
    """wrk at `connections` against the gateway (50 ms upstream) for `duration_s`, RSS every 10 s."""
    say(f"soak: gateway on CPU {','.join(map(str, sorted(SERVER_CPUS)))}, {connections} connections, {duration_s:g} s")
    target = start_gateway(lab.run_dir, lab.mock_port, lab.infra, SERVER_CPUS)
    with serving(target) as service:
        problems = load.check_answers(target)
        if problems:
            return {"problems": problems}

        infra = lab.infra
        peers = {"mock": lab.mock_port, "redis": infra.redis.port, "postgres": infra.postgres.port}
        own_port = int(target.base_url.rsplit(":", 1)[1])

        def reading() -> dict[str, object]:
            return {
                "rss_kib": service.rss_kib(),
                "fds": open_fds(service.pid),
                "fds_by_kind": fds_by_kind(service.pid, peers, own_port),
                "asyncio_tasks": load.metric_value(target.base_url, "gateway_asyncio_tasks"),
                "event_queue_depth": load.metric_value(target.base_url, "gateway_event_queue_depth"),
            }

        idle = reading()
        load.run_wrk(target.url("json50"), "bench", connections, settings.warmup_s, LOAD_CPUS)
        time.sleep(settings.settle_s)
        before = reading()  # the baseline: warm (upstream pool open), no load
        interval = min(10.0, max(1.0, duration_s / 30))
        sampler = load.Sampler(lambda: float(service.rss_kib()), interval_s=interval)
        with sampler.running():
            result = load.run_wrk(target.url("json50"), "bench", connections, duration_s, LOAD_CPUS)
        time.sleep(max(settings.settle_s, 5.0))
        after = reading()
    warmup_s = max(0.2 * duration_s, min(60.0, 0.5 * duration_s))
    start = sampler.values[0][0] if sampler.values else 0.0
    return {
        "duration_s": duration_s,
        "connections": connections,
        "upstream_delay_ms": 50,
        "wrk": result.as_dict(),
        "idle": idle,
        "before": before,
        "after": after,
        "warmup_s": warmup_s,
        "rss_growth_mib_per_min": growth_mib_per_min(sampler.values, warmup_s),
        "rss_samples": [(round(t - start, 2), int(v)) for t, v in sampler.values],
    }


# -- worker scaling ------------------------------------------------------------------------------------------------


def accounted(lab: Lab, server: Service | None, run: Callable[[], load.WrkResult]) -> load.WrkResult:
    """Runs `run` (a wrk run) and fills in where the machine's CPU went meanwhile: seconds per process group
    (the server under test, the mock, Redis, Postgres, wrk, the harness), processes the harness did not start
    (on a shared machine they disturb the numbers: the busiest are kept by name), the rest of the busy time
    (mostly the kernel's share of loopback traffic), idle and steal."""

    def groups() -> dict[str, list[int]]:
        return {"server": server.pids() if server is not None else [], **lab.cpu_groups()}

    groups_before, processes_before, machine_before = groups(), all_processes_cpu(), machine_cpu()
    harness_before = os.times()
    result = run()
    groups_after, processes_after, machine_after = groups(), all_processes_cpu(), machine_cpu()
    harness_after = os.times()
    ours = {os.getpid()}
    split: dict[str, float] = {}

    def used(pid: int) -> float:
        return processes_after[pid][1] - processes_before.get(pid, ("", 0.0))[1] if pid in processes_after else 0.0

    for name, pids in groups_after.items():
        every = set(pids) | set(groups_before.get(name, []))
        ours |= every
        split[name] = sum(used(pid) for pid in every)
    split["wrk"] = result.wrk_cpu_s
    split["harness"] = (harness_after.user + harness_after.system) - (harness_before.user + harness_before.system)
    foreign: dict[str, float] = {}
    for pid, (name, _) in processes_after.items():
        if pid not in ours and used(pid) > 0:
            foreign[name] = foreign.get(name, 0.0) + used(pid)
    split["others' processes"] = sum(foreign.values())
    busy = machine_after["busy"] - machine_before["busy"]
    split["kernel, rest"] = max(0.0, busy - sum(split.values()))
    split["steal"] = machine_after["steal"] - machine_before["steal"]
    split["idle"] = machine_after["idle"] - machine_before["idle"]
    result.cpu_s = {name: round(seconds, 3) for name, seconds in split.items()}
    result.server_cpu_s = split["server"]
    result.foreign = sorted(((n, round(s, 3)) for n, s in foreign.items()), key=lambda item: -item[1])[:5]
    return result


SCALING_CONNECTIONS = 512  # 128 connections on a 50 ms upstream cap any server at 2,560 req/s: two workers reached it


def scaling(lab: Lab, settings: Settings, connections: int = SCALING_CONNECTIONS) -> dict[str, object]:
    """The gateway with 1 then 2 workers (state in Redis), nothing pinned, `connections`, 50 ms upstream."""
    lab.repin(ALL_CPUS)
    runs: dict[str, object] = {}
    for workers in (1, 2):
        say(f"scaling: gateway with {workers} worker(s), no pinning, {connections} connections")
        target = start_gateway(
            lab.run_dir, lab.mock_port, lab.infra, ALL_CPUS, workers=workers, name=f"gateway-w{workers}"
        )
        with serving(target) as service:
            problems = load.check_answers(target)
            if problems:
                runs[str(workers)] = {"problems": problems}
                continue
            url = target.url("json50")
            load.run_wrk(url, "bench", connections, settings.warmup_s, ALL_CPUS)
            service.wait_idle()
            measured = functools.partial(load.run_wrk, url, "bench", connections, settings.duration_s, ALL_CPUS)
            result = accounted(lab, service, measured)
            say(f"  workers={workers}: {result.rps:.1f} req/s, p99 {result.p99_ms:.1f} ms")
            runs[str(workers)] = {
                "workers": workers,
                "wrk": result.as_dict(),
                "capacity_cpu_s": result.duration_s * len(ALL_CPUS),
            }
    return {"connections": connections, "upstream_delay_ms": 50, "cpus": len(ALL_CPUS), "runs": runs}


# -- where the gateway's CPU goes -----------------------------------------------------------------------------

BREAKDOWN_STEPS: tuple[tuple[str, frozenset[str]], ...] = (
    ("auth, routing, metrics, request log, SQLite events", frozenset()),
    ("+ budgets and rate limits in Redis", frozenset({"redis_limits"})),
    ("+ injection and PII checks", frozenset({"redis_limits", "content_policies"})),
    ("+ usage events to Postgres (every policy on)", FEATURES),
)


def breakdown(lab: Lab, settings: Settings, connections: int = 128) -> dict[str, object]:
    """The floor, then the gateway with its features switched on one at a time, each on CPU 1 and saturated
    (`connections`, 50 ms upstream: every path keeps its CPU busy, so none is measured at a lighter batching
    of events per turn of the loop): the server's CPU time per request, step to step, is what a feature costs."""
    steps: list[dict[str, object]] = []
    starters: list[tuple[str, Callable[[], Target]]] = [
        ("floor", lambda: start_floor(lab.run_dir, lab.mock_port, SERVER_CPUS))
    ]
    for i, (label, features) in enumerate(BREAKDOWN_STEPS):
        infra = lab.infra if features else None
        starters.append(
            (
                label,
                functools.partial(
                    start_gateway,
                    lab.run_dir,
                    lab.mock_port,
                    infra,
                    SERVER_CPUS,
                    name=f"gateway-b{i}",
                    features=features,
                ),
            )
        )
    for label, starter in starters:
        say(f"breakdown: {label}")
        target = starter()
        with serving(target):
            problems = load.check_answers(target)
            if problems:
                steps.append({"step": label, "problems": problems})
                continue
            result = measured_point(lab, target, "json50", connections, settings, LOAD_CPUS)
            steps.append(
                {"step": label, "server_cpu_us_per_request": result.server_cpu_us_per_request, "wrk": result.as_dict()}
            )
    return {"connections": connections, "upstream_delay_ms": 50, "steps": steps}


def instruction_counts(lab: Lab, requests: int = 400, warmup: int = 300) -> dict[str, object]:
    """The floor, then the gateway (every policy on), each under callgrind on SERVER_CPUS: the instructions of one
    request at one connection, 0 ms upstream (bench/instructions.py), and their ratio."""
    counts: dict[str, object] = {}
    starters = pinned_servers(lab, instructions.callgrind_wrapper(lab.run_dir), instructions.READY_TIMEOUT_S)
    for name, starter in starters.items():
        say(f"starting {name} under callgrind on CPU {','.join(map(str, sorted(SERVER_CPUS)))}")
        target = starter()
        with serving(target):
            counts[name] = counted = instructions.count_per_request(target, lab.run_dir, requests, warmup)
        say(f"  {name:8} {counted['per_request']:,.0f} instructions a request")
    floor, gateway = counts["floor"], counts["gateway"]
    assert isinstance(floor, dict) and isinstance(gateway, dict)
    return {**counts, "ratio": gateway["per_request"] / floor["per_request"]}


def settings_dict(settings: Settings) -> dict[str, object]:
    return asdict(settings)


# -- where the CPU goes, by component (py-spy) --------------------------------------------------------------


@dataclass(frozen=True)
class Profiled:
    """What `profile` measured (for the JSON file) and the collapsed stacks py-spy wrote, per server."""

    record: dict[str, object]
    folded: dict[str, str]


def profiled_point(
    lab: Lab, target: Target, settings: Settings, connections: int
) -> tuple[load.WrkResult, pyspy.Recording]:
    """A warm-up, then wrk and py-spy over the same window; the server's CPU time as every other point's."""
    service = target.service
    assert service is not None
    url, model = target.url("json50"), target.routes["json50"].model
    load.run_wrk(url, model, connections, settings.warmup_s, LOAD_CPUS)
    service.wait_idle()
    output = lab.run_dir / f"{target.name}.folded"
    recordings: list[pyspy.Recording] = []

    def run() -> load.WrkResult:
        spy = pyspy.start_recording(service.pid, settings.duration_s, output, lab.run_dir, LOAD_CPUS)
        try:
            result = load.run_wrk(url, model, connections, settings.duration_s, LOAD_CPUS)
            recordings.append(pyspy.finish(spy, output, settings.duration_s))
        finally:
            spy.stop()
        return result

    result = accounted(lab, service, run)
    recording = recordings[0]
    # py-spy has exited by the "after" reading, so `accounted` left its CPU in the rest: give it its own line.
    result.cpu_s["py-spy"] = round(recording.cpu_s, 3)
    result.cpu_s["kernel, rest"] = round(max(0.0, result.cpu_s["kernel, rest"] - recording.cpu_s), 3)
    return result, recording


def profile_server(lab: Lab, target: Target, settings: Settings, connections: int) -> tuple[dict[str, object], str]:
    """One server's record (wrk, CPU per request, py-spy's counts, samples per component) and its stacks."""
    service = target.service
    assert service is not None
    if len(service.pids()) > 1:
        say(f"  {target.name} runs {len(service.pids())} processes: py-spy records the first only")
    problems = load.check_answers(target)
    if problems:
        return {"name": target.name, "problems": problems}, ""
    result, recording = profiled_point(lab, target, settings, connections)
    folded = recording.output.read_text()
    counted = stacks.tally(stacks.parse_collapsed(folded))
    per_request_us = result.server_cpu_us_per_request
    say(
        f"  {target.name:8} {result.rps:9.1f} req/s, CPU {per_request_us or 0:.0f} µs/request, "
        f"{recording.samples} samples ({recording.errors} errors)"
    )
    record: dict[str, object] = {
        "name": target.name,
        "server_cpu_us_per_request": per_request_us,
        "wrk": result.as_dict(),
        "pyspy": recording.as_dict(),
        "samples": dict(sorted(counted.samples.items(), key=lambda item: -item[1])),
        "samples_total": counted.total,
        "samples_cut": counted.cut,
        "unattributed_leaves": counted.top_unattributed(),
    }
    return record, folded


def profile(lab: Lab, settings: Settings, connections: int = 128) -> Profiled:
    """The floor, then the gateway (every policy on), each on CPU 1 and saturated (`connections`, 50 ms
    upstream), recorded with py-spy while their CPU time per request is measured: the samples of each component
    (bench/stacks.py) times the CPU per request is what that component costs a request."""
    servers: dict[str, dict[str, object]] = {}
    folded: dict[str, str] = {}
    for name, starter in pinned_servers(lab).items():
        say(f"profile: {name} on CPU {','.join(map(str, sorted(SERVER_CPUS)))}, {connections} connections")
        target = starter()
        with serving(target):
            servers[name], folded[name] = profile_server(lab, target, settings, connections)
    record: dict[str, object] = {
        "connections": connections,
        "upstream_delay_ms": 50,
        "rate_hz": pyspy.RATE_HZ,
        "components": [{"component": name, "files": list(fragments)} for name, fragments in stacks.COMPONENTS],
        "servers": servers,
        "rows": [row.as_dict() for row in stacks.rows_of(servers)],
    }
    return Profiled(record, {name: text for name, text in folded.items() if text})
