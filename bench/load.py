"""Load and measurements: wrk runs (with the CPU wrk itself used), RSS sampling during a run, and a small
streaming client for time to first chunk and chunk separation.

The streaming client runs in the harness process (pinned with the load generator), on uvloop with aiohttp,
one keep-alive connection, requests one after another. Its own cost is the same for every target, so the
differences against the direct path are what the server under test adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import re
import statistics
import string
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import aiohttp
import orjson
import uvloop

from bench.servers import BENCH, BENCH_KEY, Target, cpu_list

RESULT_LINE = re.compile(r"^RESULT (.*)$", re.MULTILINE)
SYSTEM_PROMPT = "You are a concise assistant."
USER_PROMPT = "Summarise the plot of Hamlet in two sentences, please."  # as bench/chat.lua, which also...
# ...makes every request's user message unique (" (request <letters>)"): the gateway remembers the content
# policies' findings for texts it saw lately (system prompts and history repeat); only the system prompt may profit.
WRK_TIMEOUT = "10s"


@dataclass
class WrkResult:
    connections: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: int  # connect, read, write, timeout
    non2xx: int
    requests: int
    duration_s: float
    wrk_cpu_s: float  # user + system time wrk itself used
    server_cpu_s: float = 0.0  # the rest is filled in by the caller (bench/runs.py: accounted)
    rss_peak_kib: int = 0
    rss_mean_kib: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)  # where the machine's CPU went during the run
    foreign: list[tuple[str, float]] = field(default_factory=list)  # busiest processes not started by the harness

    @property
    def failed(self) -> int:
        return self.errors + self.non2xx

    @property
    def server_cpu_us_per_request(self) -> float | None:
        return 1e6 * self.server_cpu_s / self.requests if self.requests else None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_wrk(url: str, model: str, connections: int, duration_s: float, cpus: frozenset[int]) -> WrkResult:
    """`wrk -t1 -cN -dD -s bench/chat.lua URL`, pinned to `cpus`; the CPU time comes from wait4's rusage."""
    command = [
        "taskset",
        "-c",
        cpu_list(cpus),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={WRK_TIMEOUT}",
        "-s",
        str(BENCH / "chat.lua"),
        url,
    ]
    env = {**os.environ, "BENCH_KEY": BENCH_KEY, "BENCH_MODEL": model}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        assert process.stdout is not None
        output = process.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
    match = RESULT_LINE.search(output)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {output.strip()[-2000:]}")
    values = dict(item.split("=", 1) for item in match.group(1).split())
    return WrkResult(
        connections=connections,
        rps=float(values["rps"]),
        p50_ms=float(values["p50_ms"]),
        p90_ms=float(values["p90_ms"]),
        p99_ms=float(values["p99_ms"]),
        max_ms=float(values["max_ms"]),
        mean_ms=float(values["mean_ms"]),
        errors=int(values["errors"]),
        non2xx=int(values["non2xx"]),
        requests=int(values["requests"]),
        duration_s=float(values["duration_s"]),
        wrk_cpu_s=usage.ru_utime + usage.ru_stime,
    )


@dataclass
class Sampler:
    """Calls `read` every `interval_s` on a thread while in use; `values` holds what it returned."""

    read: Callable[[], float]
    interval_s: float = 0.25
    values: list[tuple[float, float]] = field(default_factory=list)  # (monotonic time, value)

    @contextlib.contextmanager
    def running(self) -> Iterator[Sampler]:
        stop = threading.Event()

        def loop() -> None:
            while True:
                self.values.append((time.monotonic(), self.read()))
                if stop.wait(self.interval_s):
                    return

        thread = threading.Thread(target=loop, name="sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()

    @property
    def peak(self) -> float:
        return max((v for _, v in self.values), default=0.0)

    @property
    def mean(self) -> float:
        return statistics.fmean(v for _, v in self.values) if self.values else 0.0


# -- streaming ---------------------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    requests: int
    failures: int
    ttft_ms: list[float]  # send -> first body read holding "data:"
    total_ms: list[float]  # send -> end of the stream

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": percentile(self.ttft_ms, 50),
            "p99_ms": percentile(self.ttft_ms, 99),
            "mean_ms": statistics.fmean(self.ttft_ms) if self.ttft_ms else 0.0,
            "total_p50_ms": percentile(self.total_ms, 50),
        }


@dataclass
class SeparationResult:
    """Arrivals (body reads) that came at least `gap_ms` after the previous one, per request: the slow mock
    stream pauses 20 ms between its chunks, so anything that batches chunks shows fewer."""

    gap_ms: float
    separated: list[int]
    failures: int

    def summary(self) -> dict[str, float]:
        values = self.separated or [0]
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def chat_body(model: str, stream: bool) -> bytes:
    user = f"{USER_PROMPT} (request {''.join(random.choices(string.ascii_lowercase, k=10))})"
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
    body: dict[str, object] = {"model": model, "messages": messages, "max_tokens": 64}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def stream_body(model: str) -> bytes:
    return chat_body(model, stream=True)


async def _streamed(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float | None, list[float]]:
    """One streamed request: (time to the first read holding `data:`, the time of every body read), from send."""
    headers = {"authorization": f"Bearer {BENCH_KEY}", "content-type": "application/json"}
    started = time.perf_counter()
    first: float | None = None
    arrivals: list[float] = []
    seen = b""
    async with session.post(url, data=body, headers=headers) as response:
        if response.status != 200:
            await response.read()
            raise RuntimeError(f"status {response.status}")
        async for chunk in response.content.iter_any():
            now = time.perf_counter() - started
            arrivals.append(now)
            if first is None:
                seen += chunk
                if b"data:" in seen:
                    first = now
    return first, arrivals


def _session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=1)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))


async def _ttft(target: Target, requests: int, warmup: int) -> StreamResult:
    url, model = target.url("stream"), target.routes["stream"].model
    result = StreamResult(requests, 0, [], [])
    async with _session() as session:
        for index in range(warmup + requests):
            try:
                first, arrivals = await _streamed(session, url, stream_body(model))
            except (aiohttp.ClientError, RuntimeError, TimeoutError):
                result.failures += index >= warmup
                continue
            if index >= warmup and first is not None:
                result.ttft_ms.append(first * 1000)
                result.total_ms.append(arrivals[-1] * 1000)
            elif index >= warmup:
                result.failures += 1
    return result


async def _separation(target: Target, requests: int, gap_ms: float) -> SeparationResult:
    url, model = target.url("slow"), target.routes["slow"].model
    result = SeparationResult(gap_ms, [], 0)
    async with _session() as session:
        for _ in range(requests):
            try:
                _, arrivals = await _streamed(session, url, stream_body(model))
            except (aiohttp.ClientError, RuntimeError, TimeoutError):
                result.failures += 1
                continue
            gaps = [(b - a) * 1000 for a, b in itertools.pairwise(arrivals)]
            result.separated.append(sum(gap >= gap_ms for gap in gaps))
    return result


def measure_ttft(target: Target, requests: int, warmup: int) -> StreamResult:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_ttft(target, requests, warmup))


def measure_separation(target: Target, requests: int, gap_ms: float = 10.0) -> SeparationResult:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_separation(target, requests, gap_ms))


# -- gateway probes ----------------------------------------------------------------------------------------------


def metric_value(base_url: str, name: str) -> float | None:
    """The sum of a metric's samples on GET /metrics (one worker: its own value)."""

    async def fetch() -> str:
        async with aiohttp.ClientSession() as session, session.get(base_url + "/metrics") as response:
            return await response.text()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        text = runner.run(fetch())
    values = [float(line.split()[-1]) for line in text.splitlines() if line.split("{")[0].split(" ")[0] == name]
    return sum(values) if values else None


def check_answers(target: Target) -> list[str]:
    """Problems with one request of each kind (expects 200 and, for streams, `data:` events)."""
    problems: list[str] = []

    async def probe() -> None:
        headers = {"authorization": f"Bearer {BENCH_KEY}", "content-type": "application/json"}
        async with _session() as session:
            for kind in ("json0", "json50"):
                body = chat_body(target.routes[kind].model, stream=False)
                async with session.post(target.url(kind), data=body, headers=headers) as response:
                    text = await response.text()
                    if response.status != 200 or '"choices"' not in text:
                        problems.append(f"{kind}: {response.status} {text[:300]}")
            for kind in ("stream", "slow"):
                try:
                    first, _ = await _streamed(session, target.url(kind), stream_body(target.routes[kind].model))
                except (aiohttp.ClientError, RuntimeError) as exc:
                    problems.append(f"{kind}: {exc}")
                    continue
                if first is None:
                    problems.append(f"{kind}: no data: event in the stream")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(probe())
    return problems
