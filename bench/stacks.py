"""Where a server's CPU goes, from py-spy's collapsed stacks (`py-spy record -f raw`): each sample is given to
one component, and the shares are turned into CPU time per request.

A raw (collapsed-stack) file has one line per distinct stack: the frames from the root to the leaf joined by
`;`, a space, and the number of samples that had that stack. A frame reads `function (file:line)`, the file
shortened to its package path (`aiohttp/client.py`, `gateway/chat.py`, `asyncio/runners.py`, `<frozen runpy>`).

A sample belongs to the innermost frame whose file is in one of `COMPONENTS` (walking from the leaf towards
the root): pydantic called from `gateway/request_models.py` counts as request parsing, `asyncio.timeout`
called from the gateway as asyncio. A leaf at `Runner.run (asyncio/runners.py)` is time in uvloop's C code
(the loop itself, libuv, the socket calls and the kernel under them): asyncio + event loop.

py-spy leaves idle samples out unless given `--idle` (and then it does not mark them), so every share here is
of the samples taken while a thread was busy; the CPU per request comes from /proc, over the same window.
Some stacks come back cut short: their root is a frame in the middle of a coroutine chain, not the program's
(or a thread's) entry. Their leaf is still right, so they are attributed as the others; their count is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

UNATTRIBUTED = "unattributed"
NO_FRAME = "(no Python frame)"

# (component, fragments of the file paths of its frames). A frame's file matches a fragment when it starts with
# it or holds it after a "/"; the longest matching fragment wins (so "gateway/auth.py" before "gateway/"), and
# this order is the table's.
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("uvicorn", ("uvicorn/",)),
    ("starlette", ("starlette/",)),
    (
        "upstream client",
        ("gateway/h1_client.py", "aiohttp/", "yarl/", "multidict/", "aiohappyeyeballs/", "propcache/", "frozenlist/"),
    ),
    ("asyncio + event loop", ("asyncio/", "uvloop/")),
    ("floor: passthrough handler", ("bench/floor.py",)),
    ("gateway: auth", ("gateway/auth.py",)),
    ("gateway: request parsing/validation", ("gateway/request_models.py", "gateway/http.py")),
    (
        "gateway: routing/failover",
        ("gateway/router.py", "gateway/routing.py", "gateway/failover.py", "gateway/runtime.py"),
    ),
    ("gateway: provider translation", ("adapters/",)),
    ("gateway: chat endpoint", ("gateway/chat.py", "gateway/endpoint.py", "gateway/disconnect.py")),
    ("gateway: injection", ("policies/injection.py",)),
    ("gateway: PII", ("policies/pii.py", "gateway/guardrails.py")),
    (
        "gateway: Redis budgets/limits",
        (
            "policies/redis_client.py",
            "policies/redis_store.py",
            "policies/resp.py",
            "policies/budgets.py",
            "policies/leases.py",
            "gateway/spend.py",
            "gateway/state_store.py",
            "hiredis/",
        ),
    ),
    ("gateway: usage events", ("gateway/events/", "asyncpg/", "sqlite3/")),
    ("gateway: metrics", ("gateway/metrics.py", "gateway/instruments.py", "prometheus_client/")),
    ("gateway: request log", ("gateway/logs.py",)),
    ("gateway: deadlines", ("gateway/deadlines.py",)),
    ("gateway: tracing", ("gateway/tracing.py", "opentelemetry/")),
    ("gateway: other", ("gateway/", "policies/")),
)
COMPONENT_NAMES: tuple[str, ...] = (*(name for name, _ in COMPONENTS), UNATTRIBUTED)

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
ENTRY_FUNCTIONS = frozenset({"<module>", "_run_module_as_main"})  # the root of a whole main-thread stack
THREAD_ENTRY_FILE = "threading.py"  # ... and of another thread's (Thread._bootstrap)


# -- parsing --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    function: str
    file: str  # "" when py-spy gives none (a thread or process pseudo-frame)
    line: int | None


@dataclass(frozen=True)
class Stack:
    frames: tuple[Frame, ...]  # root first, leaf last
    samples: int


def parse_frame(text: str) -> Frame:
    match = FRAME.match(text)
    if match is None:
        return Frame(text, "", None)
    line = match.group("line")
    return Frame(match.group("function"), match.group("file"), int(line) if line else None)


def parse_line(line: str) -> Stack:
    """One line of a collapsed-stack file: `root;...;leaf COUNT`. py-spy writes ` COUNT` alone for samples of a
    busy thread with no Python frame at that moment: a stack without frames."""
    stack, separator, count = line.rstrip().rpartition(" ")
    if not separator or not count.isdigit():
        raise ValueError(f"not a collapsed stack line: {line[:200]!r}")
    return Stack(tuple(parse_frame(frame) for frame in stack.split(";")) if stack else (), int(count))


def parse_collapsed(text: str) -> list[Stack]:
    return [parse_line(line) for line in text.splitlines() if line.strip()]


# -- attribution ----------------------------------------------------------------------------------------------


def fragment_matches(path: str, fragment: str) -> bool:
    return path.startswith(fragment) or f"/{fragment}" in path


def component_of_file(path: str, components: Sequence[tuple[str, Sequence[str]]] = COMPONENTS) -> str | None:
    """The component whose longest fragment matches `path`, or None."""
    best: tuple[int, str] | None = None
    for name, fragments in components:
        for fragment in fragments:
            if fragment_matches(path, fragment) and (best is None or len(fragment) > best[0]):
                best = (len(fragment), name)
    return best[1] if best is not None else None


def attribute(frames: Sequence[Frame], known: Mapping[str, str | None]) -> str:
    """The component of the innermost frame that has one (`known`: file -> component or None)."""
    for frame in reversed(frames):
        component = known.get(frame.file)
        if component is not None:
            return component
    return UNATTRIBUTED


def is_rooted(frames: Sequence[Frame]) -> bool:
    """Whether the stack starts at the program's or a thread's entry (else py-spy returned it cut short)."""
    if not frames:
        return False
    root = frames[0]
    return root.function in ENTRY_FUNCTIONS or root.file.endswith(THREAD_ENTRY_FILE)


@dataclass
class Tally:
    """Samples per component, and what else a recording says about its stacks."""

    samples: dict[str, int]
    total: int
    cut: int  # samples whose stack does not start at an entry
    unattributed_leaves: dict[str, int]  # leaf frame -> samples, for the samples no component took

    def top_unattributed(self, count: int = 10) -> list[tuple[str, int]]:
        return sorted(self.unattributed_leaves.items(), key=lambda item: (-item[1], item[0]))[:count]


def frame_text(frame: Frame) -> str:
    if not frame.file:
        return frame.function
    return f"{frame.function} ({frame.file}{'' if frame.line is None else f':{frame.line}'})"


def tally(stacks: Iterable[Stack], components: Sequence[tuple[str, Sequence[str]]] = COMPONENTS) -> Tally:
    known: dict[str, str | None] = {}
    result = Tally({}, 0, 0, {})
    for stack in stacks:
        for frame in stack.frames:
            if frame.file not in known:
                known[frame.file] = component_of_file(frame.file, components) if frame.file else None
        component = attribute(stack.frames, known)
        result.samples[component] = result.samples.get(component, 0) + stack.samples
        result.total += stack.samples
        if not is_rooted(stack.frames):
            result.cut += stack.samples
        if component == UNATTRIBUTED:
            leaf = frame_text(stack.frames[-1]) if stack.frames else NO_FRAME
            result.unattributed_leaves[leaf] = result.unattributed_leaves.get(leaf, 0) + stack.samples
    return result


# -- the table ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One server's column of the table: samples per component and its CPU time per request (µs)."""

    samples: Mapping[str, int]
    cpu_us_per_request: float | None

    @property
    def total(self) -> int:
        return sum(self.samples.values())

    def share(self, component: str) -> float:
        total = self.total
        return self.samples.get(component, 0) / total if total else 0.0

    def cpu_us(self, fraction: float) -> float | None:
        return None if self.cpu_us_per_request is None else fraction * self.cpu_us_per_request


@dataclass(frozen=True)
class Row:
    """One line of the table: a component's share of each server's samples and the CPU per request it is."""

    component: str
    floor_share: float
    floor_us: float | None
    gateway_share: float
    gateway_us: float | None

    @property
    def difference_us(self) -> float | None:
        if self.floor_us is None or self.gateway_us is None:
            return None
        return self.gateway_us - self.floor_us

    def as_dict(self) -> dict[str, object]:
        return {
            "component": self.component,
            "floor_share": self.floor_share,
            "floor_us_per_request": self.floor_us,
            "gateway_share": self.gateway_share,
            "gateway_us_per_request": self.gateway_us,
            "difference_us_per_request": self.difference_us,
        }


def component_row(component: str, floor: Side, gateway: Side) -> Row:
    floor_share, gateway_share = floor.share(component), gateway.share(component)
    return Row(component, floor_share, floor.cpu_us(floor_share), gateway_share, gateway.cpu_us(gateway_share))


def ordered_components(seen: Iterable[str]) -> list[str]:
    """`COMPONENT_NAMES` order, then any other name."""
    present = set(seen)
    return [name for name in COMPONENT_NAMES if name in present] + sorted(present - set(COMPONENT_NAMES))


def rows(floor: Side, gateway: Side) -> list[Row]:
    """One row per component either server spent samples in, then "total": 100% of each server's samples, which
    is its whole CPU time per request."""
    used = [name for name in (*floor.samples, *gateway.samples) if floor.samples.get(name) or gateway.samples.get(name)]
    found = [component_row(name, floor, gateway) for name in ordered_components(used)]
    whole = (1.0 if floor.total else 0.0, 1.0 if gateway.total else 0.0)
    found.append(Row("total", whole[0], floor.cpu_us(whole[0]), whole[1], gateway.cpu_us(whole[1])))
    return found


def side_of(server: Mapping[str, object]) -> Side:
    """A server's column from its record in the result (`samples`, `server_cpu_us_per_request`)."""
    samples = server.get("samples")
    cpu = server.get("server_cpu_us_per_request")
    return Side(samples if isinstance(samples, Mapping) else {}, float(cpu) if isinstance(cpu, int | float) else None)


def rows_of(servers: Mapping[str, Mapping[str, object]]) -> list[Row]:
    """The table for the result's "floor" and "gateway" records (a missing one is an empty column)."""
    return rows(side_of(servers.get("floor", {})), side_of(servers.get("gateway", {})))
