"""What every endpoint shares: the live runtime (swapped whole on reload), the upstream client,
the usage sink. Passed explicitly to the endpoints; there are no module-level globals."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from gateway.config.loader import ConfigError, load_file
from gateway.config.schema import Config
from gateway.deadlines import DeadlineWheel
from gateway.events.pipeline import EventPipeline
from gateway.events.record import DiscardSink, UsageSink
from gateway.events.store import open_store
from gateway.failover import Failover
from gateway.instruments import RequestMetrics
from gateway.logs import RequestLog
from gateway.policy_thread import PolicyThread
from gateway.runtime import Runtime, build_runtime
from gateway.state_store import LimitsSource, StateStore
from gateway.tracing import Tracing
from gateway.upstream import UpstreamClient
from policies.budgets import LimitSpec, LimitState, MemoryStore, ReservationStore

log = logging.getLogger("gateway")


RESTART_ONLY = ("server.host", "server.port", "server.workers", "server.drain_timeout_s", "state", "events")


def restart_only_changes(old: Config, new: Config) -> list[str]:
    """The settings a reload reads but a running gateway cannot apply (its listener, worker processes,
    state store and event pipeline were set up from the config it started with)."""
    changed = []
    for path in RESTART_ONLY:
        section, _, name = path.partition(".")
        before, after = getattr(old, section), getattr(new, section)
        if (getattr(before, name) != getattr(after, name)) if name else before != after:
            changed.append(path)
    return changed


@dataclass
class GatewayState:
    runtime: Runtime
    config_path: Path | None = None
    deadlines: DeadlineWheel = field(default_factory=DeadlineWheel)  # the request path's timeouts, one wheel
    client: UpstreamClient = field(default_factory=UpstreamClient)
    events: UsageSink = field(default_factory=DiscardSink)  # the pipeline, once `open_events` ran
    store: ReservationStore = field(default_factory=MemoryStore)
    failover: Failover = field(default_factory=Failover)
    policy_thread: PolicyThread = field(default_factory=PolicyThread)  # a large request's content policies
    state_store: StateStore | None = None
    pipeline: EventPipeline | None = None
    tracing: Tracing = field(default_factory=Tracing)
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=False))
    draining: bool = False
    request_log: RequestLog = field(default_factory=RequestLog)
    supervisor_pid: int | None = None  # workers > 1: the process that passes a reload on to every worker
    _reloads: set[asyncio.Task[list[str]]] = field(default_factory=set)
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one reload at a time: the newest file wins
    needs_restart: list[str] = field(default_factory=list)  # settings the last reload read but cannot apply
    started_config: Config = field(init=False)  # what the listener, workers, state store and events were set up from

    def __post_init__(self) -> None:
        self.client.deadlines = self.failover.deadlines = self.deadlines
        self.started_config = self.runtime.config
        self.metrics = RequestMetrics(self.registry)
        self.failover.metrics, self.failover.tracing = self.metrics, self.tracing

    def reset_failover(self) -> None:
        """Circuits and the retry budget start afresh (tests); the new one reports to the same metrics."""
        self.failover = Failover(metrics=self.metrics, tracing=self.tracing, deadlines=self.deadlines)

    async def open_events(self) -> None:
        """Usage events go to Postgres (`events.postgres_dsn`) or SQLite, through the on-disk journal in
        `events.spool_dir`. Like the state store, a change needs a restart, not a reload."""
        if self.pipeline is None:
            config = self.runtime.config.events
            self.pipeline = EventPipeline(open_store(config), Path(config.spool_dir))
            await self.pipeline.start()
            self.events = self.pipeline

    async def close_events(self, timeout_s: float = 10.0) -> None:
        if self.pipeline is not None:
            await self.pipeline.close(timeout_s)
        self.tracing.shutdown()
        self.request_log.flush()
        self.metrics.flush()  # with several workers, what the files keep after this process is gone

    def open_state_store(self) -> None:
        """Counters live in Redis when `state.redis_url` is set (a change needs a restart, not a reload)."""
        if self.state_store is None:
            self.state_store = StateStore(self.runtime.config.state, self.deadlines.timeout)
            self.store = self.state_store.store

    async def adopt_old_counters(self) -> None:
        if self.state_store is not None:
            tenants = self.runtime.tenants.values()
            await self.state_store.adopt_old_counters((tenant.name, tenant.limits) for tenant in tenants)

    async def limit_states(
        self, scope: str, limits: tuple[LimitSpec, ...], now: float
    ) -> tuple[list[LimitState], LimitsSource]:
        """A tenant's live budget and rate-limit state, and where it was read (see `LimitsSource`)."""
        if self.state_store is None:  # (an app served without its lifespan)
            return await self.store.state(scope, limits, now), "in_process"
        return await self.state_store.limit_states(scope, limits, now)

    async def close_state_store(self) -> None:
        if self.state_store is not None:
            await self.state_store.close()

    def reload_other_workers(self) -> bool:
        """After a reload asked of this worker (/admin/reload): the supervisor passes SIGHUP on to every
        worker, this one included (reloading the same file twice is harmless). True when every worker has,
        or is being sent, the new config: at once when this process is the only one."""
        if self.supervisor_pid is None:
            return True
        try:
            os.kill(self.supervisor_pid, signal.SIGHUP)
        except OSError as exc:
            log.error("could not ask the supervisor to reload the other workers: %s", exc)
            return False
        return True

    def reload_soon(self) -> None:
        """For signal handlers: reload in the background (the task is kept so it is not collected)."""
        self._reloads.add(task := asyncio.get_running_loop().create_task(self.reload()))
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> list[str]:
        """Load the config file again; on any problem keep serving the old one. Returns the problems.
        Loading and compiling run in a thread so that streams in flight are not stalled meanwhile.
        Reloads run one at a time, each reading the file when its turn comes: one that read an older
        file can never finish after, and overwrite, one that read a newer file."""
        if self.config_path is None:
            return ["this gateway was not started from a config file"]
        async with self._reload_lock:
            return await self._reload(self.config_path)

    async def _reload(self, path: Path) -> list[str]:
        try:
            runtime = await asyncio.to_thread(lambda: build_runtime(load_file(path)))
            if self.runtime.tenants and not runtime.tenants:  # a truncated or emptied file, most likely
                raise ConfigError(["tenants: the new config defines none, so every key would be refused"])
        except ConfigError as exc:
            log.error("config reload rejected, the previous config keeps serving: %s", "; ".join(exc.problems))
            return exc.problems
        except Exception as exc:  # a file the checks let through but the build cannot compile: a gap in the checks
            log.error(
                "config reload rejected, the previous config keeps serving: compiling it raised %s\n%s",
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),  # where, not the message: it may quote a value
            )
            return [f"the config could not be compiled ({type(exc).__name__}; the server log says where)"]
        self.needs_restart = restart_only_changes(self.started_config, runtime.config)
        if self.needs_restart:
            log.warning(
                "config reloaded, but these settings only take effect at a restart: %s", ", ".join(self.needs_restart)
            )
        self.runtime = runtime
        for name, why in runtime.disabled_providers.items():
            log.warning("provider %s is disabled: %s", name, why)
        log.info("config reloaded from %s", self.config_path)
        return []
