"""Starting, pinning, watching and stopping what a benchmark runs: the nginx mock, Redis and Postgres (from
tests/support), the floor, the gateway and, when installed, LiteLLM's proxy.

Every process is started in its own session (a ^C reaches the harness, which then stops them in order) and
registered on an ExitStack, so whatever happens, each is stopped, and its process group killed, on the way
out. Pinning goes through `taskset` at start and `sched_setaffinity` on every thread of a process tree
afterwards (Redis and Postgres are started by tests/support, then pinned).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import yaml

from bench import slices
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer
from tests.support.scratch_server import apt_install, free_port

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV_BIN = Path(sys.executable).parent
MOCK_DELAYS: Mapping[str, float] = MappingProxyType(
    {"/d0": 0.0, "/d50": 0.05}
)  # path prefix -> fixed delay (bench/floor.py too)
BENCH_KEY = "sk-gw-bench-0123456789abcdef"
UPSTREAM_MODEL = "bench-upstream"
CLK_TCK = os.sysconf("SC_CLK_TCK")
APT_PACKAGES = (("nginx", "nginx"), ("wrk", "wrk"), ("redis-server", "redis-server"), ("taskset", "util-linux"))
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")


# -- what is installed -------------------------------------------------------------------------------------


def ensure_tools(install: bool, valgrind: bool = False) -> None:
    """nginx with the echo module, wrk, redis-server, taskset (and valgrind when asked): apt-get installs what is
    missing (as root)."""
    wanted = [*APT_PACKAGES, ("valgrind", "valgrind")] if valgrind else APT_PACKAGES
    missing = [package for binary, package in wanted if shutil.which(binary) is None]
    if not ECHO_MODULE.exists():
        missing.append("libnginx-mod-http-echo")
    if not missing:
        return
    if not install or os.geteuid() != 0:
        raise SystemExit(f"bench: missing {', '.join(missing)} (apt-get install -y {' '.join(missing)})")
    print(f"installing {', '.join(missing)} with apt-get", file=sys.stderr)
    apt_install(*missing)


def litellm_command() -> list[str] | None:
    """How to start LiteLLM's proxy, when it is installed (it is never installed by the harness)."""
    for candidate in (VENV_BIN / "litellm", shutil.which("litellm")):
        if candidate and Path(candidate).exists():
            return [str(candidate)]
    return None


# -- processes in /proc ------------------------------------------------------------------------------------


def proc_stats() -> Iterator[tuple[int, str]]:
    """(pid, the text of /proc/<pid>/stat) for every process still there when read."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            yield int(entry), Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    parents: dict[int, list[int]] = {}
    for child, stat in proc_stats():
        ppid = int(stat.rpartition(")")[2].split()[1])
        parents.setdefault(ppid, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def rss_kib(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def cpu_seconds(pids: Sequence[int]) -> dict[int, float]:
    """utime + stime of each live process, in seconds."""
    times: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            times[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return times


def all_processes_cpu() -> dict[int, tuple[str, float]]:
    """Every process on the machine: pid -> (command name, utime + stime in seconds)."""
    found: dict[int, tuple[str, float]] = {}
    for pid, stat in proc_stats():
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat.rpartition(")")[2].split()
        found[pid] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return found


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def tcp_sockets() -> dict[int, tuple[int, int]]:
    """Socket inode -> (local port, remote port) for every TCP socket on the machine."""
    found: dict[int, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], int(fields[9])
                found[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return found


def fds_by_kind(pid: int, peers: Mapping[str, int], own_port: int) -> dict[str, int]:
    """A process's open descriptors by what they are: TCP connections to each named peer port, from clients
    (to `own_port`), other sockets, and the rest (files, pipes, eventfds, epoll)."""
    sockets = tcp_sockets()
    by_port = {port: name for name, port in peers.items()}
    counts: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = "files, pipes, other"
        if link.startswith("socket:["):
            local, remote = sockets.get(int(link[8:-1]), (0, 0))
            if remote in by_port:
                kind = by_port[remote]
            elif local == own_port:
                kind = "listening" if remote == 0 else "clients"
            else:
                kind = "other sockets"
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def pin(pid: int, cpus: frozenset[int]) -> None:
    """Every thread of `pid` and of its descendants onto `cpus` (children forked later inherit it)."""
    for process in descendants(pid):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{process}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(task), cpus)


def cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(map(str, sorted(cpus)))


def machine_cpu() -> dict[str, float]:
    """Machine-wide CPU seconds from /proc/stat: busy (user, nice, system, irq, softirq), steal, idle."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {
        "busy": (user + nice + system + irq + softirq) / CLK_TCK,
        "steal": steal / CLK_TCK,
        "idle": (idle + iowait) / CLK_TCK,
    }


# -- one started process -----------------------------------------------------------------------------------


def http_status(url: str, timeout_s: float = 2.0) -> int:
    """The status of a GET (readiness probes)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read()
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Service:
    """A process started by the harness, in its own session, with its output in `log`."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout_s: float = 15.0

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> list[int]:
        return descendants(self.pid) if self.process.poll() is None else []

    def rss_kib(self) -> int:
        return rss_kib(self.pids())

    def wait_idle(self, below: float = 0.05, window_s: float = 0.3, timeout_s: float = 5.0) -> float:
        """Waits until the service's processes use less than `below` of a CPU over `window_s` (the work a load
        run left behind, such as requests its closed connections abandoned, is done); returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            pids = self.pids()
            before = sum(cpu_seconds(pids).values())
            time.sleep(window_s)
            if sum(cpu_seconds(pids).values()) - before < below * window_s:
                break
        return time.monotonic() - started

    def log_tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_http(self, url: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if http_status(url, timeout_s=1.0) == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer {url} within {timeout_s}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=self.stop_timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # whatever is left of its group (workers, helpers)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start(
    name: str,
    command: Sequence[str],
    cpus: frozenset[int],
    run_dir: Path,
    env: Mapping[str, str] | None = None,
    stop_signal: signal.Signals = signal.SIGTERM,
    load_side: bool = False,
) -> Service:
    """Starts `command` pinned to `cpus`, its output to `run_dir/<name>.log`; with the scheduler's default slice
    unless it is on the load generator's side (the mock: bench/slices.py)."""
    log = run_dir / f"{name}.log"
    with log.open("ab") as out, contextlib.nullcontext() if load_side else slices.default_slice():
        process = subprocess.Popen(
            ["taskset", "-c", cpu_list(cpus), *command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return Service(name, process, log, stop_signal)


# -- the pieces ----------------------------------------------------------------------------------------------


def start_mock(run_dir: Path, cpus: frozenset[int]) -> tuple[Service, int]:
    """nginx + echo on a free port: /d0/... answers at once, /d50/... after 50 ms (see bench/mock/)."""
    root = run_dir / "mock"
    (root / "tmp").mkdir(parents=True)
    port = free_port()
    locations = (BENCH / "mock" / "locations.conf.tmpl").read_text()
    rendered = "".join(
        locations.replace("@PREFIX@", prefix).replace("@DELAY_S@", f"{delay:g}")
        for prefix, delay in MOCK_DELAYS.items()
    )
    conf = (BENCH / "mock" / "nginx.conf.tmpl").read_text()
    conf = conf.replace("@LOCATIONS@", rendered).replace("@ROOT@", str(root)).replace("@PORT@", str(port))
    (root / "nginx.conf").write_text(conf)
    service = start(
        "mock",
        ["nginx", "-c", str(root / "nginx.conf"), "-p", str(root), "-e", str(root / "error.log")],
        cpus,
        run_dir,
        stop_signal=signal.SIGQUIT,  # graceful
        load_side=True,
    )
    service.wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=15)
    return service, port


@dataclass
class Infra:
    """Redis and Postgres for the gateway's state and events (tests/support's throwaway servers)."""

    redis: RedisServer
    postgres: PostgresServer

    @classmethod
    def start(cls, stack: contextlib.ExitStack, cpus: frozenset[int]) -> Infra:
        redis = RedisServer()
        stack.callback(redis.close)
        postgres = PostgresServer()
        stack.callback(postgres.close)
        with slices.default_slice():  # (bench/slices.py: only the load generator and the mock get short slices)
            redis.start()
            postgres.start()
        infra = cls(redis, postgres)
        infra.pin(cpus)
        return infra

    def pids(self) -> dict[str, list[int]]:
        groups = {"redis": self.redis.process, "postgres": self.postgres.process}
        return {name: descendants(p.pid) if p is not None else [] for name, p in groups.items()}

    def pin(self, cpus: frozenset[int]) -> None:
        for process in (self.redis.process, self.postgres.process):
            if process is not None:
                pin(process.pid, cpus)


@dataclass(frozen=True)
class Route:
    path: str
    model: str


@dataclass
class Target:
    """A path under test: where to send each kind of request, and the process serving it (none for direct)."""

    name: str
    base_url: str
    routes: Mapping[str, Route]  # json0, json50, stream, slow
    service: Service | None = None
    note: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    def url(self, kind: str) -> str:
        return self.base_url + self.routes[kind].path


def mock_routes() -> dict[str, Route]:
    """The mock's paths (the floor mirrors them), with the gateway's model alias for each kind of request."""
    return {
        "json0": Route("/d0/v1/chat/completions", "bench-0ms"),
        "json50": Route("/d50/v1/chat/completions", "bench"),
        "stream": Route("/d0/s/v1/chat/completions", "bench-stream"),
        "slow": Route("/d0/slow/v1/chat/completions", "bench-slow"),
    }


def gateway_routes() -> dict[str, Route]:
    path = "/v1/chat/completions"
    return {kind: Route(path, route.model) for kind, route in mock_routes().items()}


def direct_target(mock_port: int) -> Target:
    return Target("direct", f"http://127.0.0.1:{mock_port}", mock_routes())


def start_floor(
    run_dir: Path, mock_port: int, cpus: frozenset[int], wrapper: Sequence[str] = (), ready_timeout_s: float = 60.0
) -> Target:
    """The floor on `cpus`; `wrapper` goes in front of its command (bench/instructions.py: valgrind)."""
    port = free_port()
    command = [
        *wrapper,
        str(VENV_BIN / "python"),
        "-m",
        "uvicorn",
        "bench.floor:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--lifespan",
        "on",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    env = {"BENCH_UPSTREAM": f"http://127.0.0.1:{mock_port}"}
    service = start("floor", command, cpus, run_dir, env=env)
    service.wait_http(f"http://127.0.0.1:{port}/healthz", ready_timeout_s)
    return Target("floor", f"http://127.0.0.1:{port}", mock_routes(), service)


FEATURES = frozenset({"redis_limits", "content_policies", "postgres_events"})


def gateway_config(
    mock_port: int, port: int, workers: int, infra: Infra | None, run_dir: Path, features: frozenset[str] = FEATURES
) -> dict[str, object]:
    """Every policy on (the default `features`): tenant auth, injection block and PII redaction (the defaults,
    spelled out), token and USD budgets and rpm/tpm limits (huge, never hit) in Redis, usage events to
    Postgres, metrics. Without a feature (--breakdown): no budgets or limits (and no Redis); injection and PII
    off; usage events to SQLite. Auth, routing, metrics, the request log and usage events are always on."""
    mock = f"http://127.0.0.1:{mock_port}"
    providers = {
        "mock0": f"{mock}/d0/v1",
        "mock50": f"{mock}/d50/v1",
        "mock-stream": f"{mock}/d0/s/v1",
        "mock-slow": f"{mock}/d0/slow/v1",
    }
    models = {"bench-0ms": "mock0", "bench": "mock50", "bench-stream": "mock-stream", "bench-slow": "mock-slow"}
    return {
        "server": {"host": "127.0.0.1", "port": port, "workers": workers, "drain_timeout_s": 2, "readiness_grace_s": 0},
        "state": {"redis_url": infra.redis.url if infra and "redis_limits" in features else None},
        "events": {
            "postgres_dsn": infra.postgres.dsn if infra and "postgres_events" in features else None,
            "spool_dir": str(run_dir / f"spool-{port}"),
            "sqlite_path": str(run_dir / f"events-{port}.sqlite"),
        },
        "providers": {
            name: {"type": "openai", "base_url": url, "api_key": "sk-mock-upstream"} for name, url in providers.items()
        },
        "models": {alias: {"deployments": [{"provider": p, "model": UPSTREAM_MODEL}]} for alias, p in models.items()},
        "pricing": {UPSTREAM_MODEL: {"input": 0.15, "output": 0.60}, "gpt-4o-mini": {"input": 0.15, "output": 0.60}},
        "defaults": {
            "max_tokens_per_request": 4096,
            "policies": {
                "injection": {"action": "block" if "content_policies" in features else "off", "threshold": 0.8},
                "pii": {
                    "action": "redact" if "content_policies" in features else "off",
                    "entities": ["email", "phone", "credit_card", "ssn", "iban", "ip_address", "secret"],
                },
            },
        },
        "tenants": {
            "bench": {
                "keys": [{"id": "bench-1", "sha256": hashlib.sha256(BENCH_KEY.encode()).hexdigest()}],
                "models": ["*"],
                **(
                    {
                        "budgets": [{"tokens": 10**15, "per": "day"}, {"usd": 1e12, "per": "month"}],
                        "rate_limits": {"rpm": 10**9, "tpm": 10**12},
                    }
                    if "redis_limits" in features
                    else {}
                ),
            }
        },
    }


def start_gateway(
    run_dir: Path,
    mock_port: int,
    infra: Infra | None,
    cpus: frozenset[int],
    workers: int = 1,
    name: str = "gateway",
    features: frozenset[str] = FEATURES,
    wrapper: Sequence[str] = (),
    ready_timeout_s: float = 60.0,
) -> Target:
    port = free_port()
    config = run_dir / f"{name}.yaml"
    settings = gateway_config(mock_port, port, workers, infra, run_dir, features)
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    command = [*wrapper, str(VENV_BIN / "gateway"), "serve", "--config", str(config)]  # info: the request log is on
    service = start(name, command, cpus, run_dir)
    service.wait_http(f"http://127.0.0.1:{port}/readyz", ready_timeout_s)
    return Target(name, f"http://127.0.0.1:{port}", gateway_routes(), service, extra={"workers": workers})


def start_litellm(run_dir: Path, mock_port: int, cpus: frozenset[int], command: list[str]) -> Target:
    """LiteLLM's proxy, one worker, no database, the same mock (the same model names as the gateway)."""
    port = free_port()
    mock = f"http://127.0.0.1:{mock_port}"
    bases = {"bench-0ms": "/d0/v1", "bench": "/d50/v1", "bench-stream": "/d0/s/v1", "bench-slow": "/d0/slow/v1"}
    config = {
        "model_list": [
            {
                "model_name": alias,
                "litellm_params": {"model": f"openai/{UPSTREAM_MODEL}", "api_base": mock + base, "api_key": "sk-mock"},
            }
            for alias, base in bases.items()
        ],
        "general_settings": {"master_key": BENCH_KEY},
        "litellm_settings": {"telemetry": False},
    }
    path = run_dir / "litellm.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    full = [*command, "--config", str(path), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    service = start("litellm", full, cpus, run_dir, env={"LITELLM_LOG": "ERROR"})
    service.wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout_s=120)
    return Target("litellm", f"http://127.0.0.1:{port}", gateway_routes(), service)
