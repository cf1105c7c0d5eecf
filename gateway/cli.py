"""The `gateway` command: serve, check-config, keys new, encrypt-secret, usage, migrate."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import logging
import logging.config
import math
import os
import re
import secrets as random_secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import orjson

from gateway.config import secrets
from gateway.config.loader import ConfigError, LoadedConfig, load_file
from gateway.config.schema import EventsConfig
from gateway.events.migrations import VERSION_TABLE
from gateway.events.store import EventStore, StoreUnreachable, open_store
from gateway.events.usage import (
    DIMENSIONS,
    Dimension,
    check_range,
    parse_dimension,
    parse_instant,
    pending_journal_files,
    render_table,
    report_json,
    totals,
    usage_report,
)
from gateway.logs import FORMAT_ENV, FORMATS, TEXT_FORMAT, logging_config

log = logging.getLogger("gateway")
T = TypeVar("T")


def _serve(args: argparse.Namespace) -> int:
    loaded = _load(args.config)
    server = loaded.config.server
    host = args.host or server.host
    port = args.port or server.port
    workers = args.workers or server.workers
    if workers > 1 and not loaded.config.state.redis_url:
        print(
            "gateway: --workers > 1 needs state.redis_url: in-process budgets and rate limits would be "
            "multiplied by the number of workers.",
            file=sys.stderr,
        )
        return 2
    for name, why in loaded.disabled_providers.items():
        log.warning("provider %s is disabled: %s", name, why)
    import uvicorn

    from gateway.app import CONFIG_ENV
    from gateway.supervisor import SUPERVISOR_PID_ENV, Supervisor

    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the handler it found: make that
    # handler a no-op so a clean drain exits 0 instead of dying by the signal afterwards.
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, lambda *_: None)
    os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    os.environ[FORMAT_ENV] = args.log_format
    metrics_dir = None
    if workers > 1:  # one /metrics for all workers: prometheus-client's multiprocess mode (gateway/metrics.py)
        metrics_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        os.environ[SUPERVISOR_PID_ENV] = str(os.getpid())
    log.info("serving %s on http://%s:%d with %d worker(s)", args.config, host, port, workers)
    config = uvicorn.Config(
        "gateway.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # the gateway writes its own request log (gateway/endpoint.py)
        proxy_headers=False,  # the gateway never reads the client's address: no X-Forwarded-* rewriting per request
        log_config=logging_config(args.log_level, args.log_format),
        log_level=args.log_level,
        timeout_graceful_shutdown=math.ceil(server.drain_timeout_s),
    )
    try:
        if workers > 1:
            Supervisor(config, sockets=[config.bind_socket()]).run()
        else:
            uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass
    if metrics_dir is not None:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _print_problems(path: str, problems: list[str]) -> None:
    print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def _check_config(args: argparse.Namespace) -> int:
    try:
        loaded = load_file(args.path)
    except ConfigError as exc:
        _print_problems(args.path, exc.problems)
        return 1
    config = loaded.config
    counts = f"{len(config.providers)} providers, {len(config.models)} models, {len(config.tenants)} tenants"
    print(f"{args.path}: ok ({counts})")
    for name, why in loaded.disabled_providers.items():
        print(f"  provider {name} will be disabled: {why}")
    return 0


def _keys_new(args: argparse.Namespace) -> int:
    if not args.tenant.strip():
        print("gateway: the tenant's name is empty", file=sys.stderr)
        return 2
    key = "sk-gw-" + random_secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    key_id = args.id or f"{args.tenant}-{random_secrets.token_hex(3)}"
    print(f"key (give it to tenant {args.tenant}; it is shown only once): {key}")
    print(f"config line for tenants.{args.tenant}.keys:")
    print(f'  - {{id: {orjson.dumps(key_id).decode()}, sha256: "{digest}"}}')  # quoted: 2024, yes, "a #1" stay strings
    return 0


def _encrypt_secret(args: argparse.Namespace) -> int:
    try:
        master = secrets.master_key_from_env()
        try:
            value = sys.stdin.buffer.read().decode().rstrip("\r\n")  # (bytes: the locale may escape bad ones)
        except UnicodeDecodeError:
            print("gateway: standard input is not UTF-8 text", file=sys.stderr)
            return 2
        if not value:
            print("gateway: nothing to encrypt on standard input", file=sys.stderr)
            return 2
        print(secrets.encrypt(value, master))
    except secrets.SecretError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    return 0


class CommandFailed(Exception):
    """A one-line reason for stderr; the command exits with `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _load(path: str) -> LoadedConfig:
    try:
        return load_file(path)
    except ConfigError as exc:
        _print_problems(path, exc.problems)
        raise CommandFailed("", 2) from None


def store_label(config: EventsConfig) -> str:
    """Which store, for people: never the DSN itself (it may hold a password)."""
    if not config.postgres_dsn:
        return f"sqlite {config.sqlite_path}"
    parts = urlsplit(config.postgres_dsn)
    address = parts.netloc.rpartition("@")[2]
    return f"postgres {address}{parts.path}" if parts.scheme.startswith("postgres") and address else "postgres"


def _scrubbed(message: str, config: EventsConfig) -> str:
    """An error message with the DSN and its password taken out, whatever the driver put in it."""
    dsn = config.postgres_dsn
    if not dsn:
        return message
    message = message.replace(dsn, store_label(config))
    userinfo = urlsplit(dsn).netloc.rpartition("@")[0]
    passwords = [userinfo.partition(":")[2]] if "://" in dsn else re.findall(r"password\s*=\s*(\S+)", dsn)
    for password in filter(None, passwords):
        message = message.replace(password, "***")
    return message


def _with_store(config: EventsConfig, use: Callable[[EventStore], Awaitable[T]], unreachable_code: int) -> T:
    """Runs `use` on a store opened from `events:`, closed afterwards; a store that cannot answer is a
    one-line CommandFailed (what the driver said, never the DSN)."""

    async def run() -> T:
        store = open_store(config)
        try:
            return await use(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreUnreachable as exc:
        reason = str(exc).partition(": ")[2] or str(exc)  # "postgres: ..." and the label says postgres already
        message = f"the event store ({store_label(config)}) is unreachable: {_scrubbed(reason, config)}"
        raise CommandFailed(message, unreachable_code) from None
    except Exception as exc:
        detail = " ".join(_scrubbed(f"{type(exc).__name__}: {exc}", config).split())  # one line
        raise CommandFailed(f"the event store ({store_label(config)}) failed: {detail}", unreachable_code) from None


def _usage(args: argparse.Namespace) -> int:
    events = _load(args.config).config.events
    tenant: str | None = args.tenant or None
    now = dt.datetime.now(dt.UTC)
    try:
        since = None if args.since is None else parse_instant(args.since, now)
        until = None if args.until is None else parse_instant(args.until, now)
        check_range(since, until)
        by: Dimension = parse_dimension(args.by)
    except ValueError as exc:
        raise CommandFailed(f"bad argument: {exc}", 2) from None
    missing = not events.postgres_dsn and not Path(events.sqlite_path).exists()
    rows = (
        []
        if missing  # a report does not create the file (a wrong working directory would litter one)
        else _with_store(
            events,
            lambda store: usage_report(store, by=by, tenant=tenant, since=since, until=until),
            unreachable_code=2,
        )
    )
    pending = pending_journal_files(Path(events.spool_dir))
    if args.json:
        report = report_json(rows, by, tenant=tenant, since=since, until=until, pending_files=pending)
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0
    scope = [f"by {by}", f"tenant {tenant}" if tenant else "all tenants"]
    if since is not None:
        scope.append(f"since {since.isoformat()}")
    if until is not None:
        scope.append(f"until {until.isoformat()}")
    print(f"usage {', '.join(scope)} ({store_label(events)})")
    if rows:
        print("\n".join(render_table(rows, by)))
    else:
        print("no requests recorded in this range")
    if missing:
        print(f"note: {events.sqlite_path} does not exist (relative paths are from the working directory)")
    unpriced = totals(rows).unpriced_requests
    if unpriced:
        print(
            f"note: cost_usd leaves out {unpriced} request(s) whose cost is unknown (+?): a model with no known "
            "price, or usage the provider never reported"
        )
    if pending:
        print(
            f"note: {pending} journal file(s) in {events.spool_dir} hold events not yet in the store "
            "(a running gateway writes them; a stopped one replays them at its next start)"
        )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    events = _load(args.config).config.events

    async def migrate(store: EventStore) -> tuple[list[int], int | None]:
        applied = await store.migrate()
        [(version,)] = await store.query(f"SELECT max(version) FROM {VERSION_TABLE}")
        return applied, version

    applied, version = _with_store(events, migrate, unreachable_code=1)
    label = store_label(events)
    if applied:
        print(f"{label}: applied migration(s) {', '.join(map(str, applied))}; schema at version {version}")
    else:
        print(f"{label}: up to date (schema version {version})")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="gateway", description="OpenAI-compatible LLM gateway")
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", required=True, help="path to config.yaml")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-format", default="json", choices=FORMATS, help="json (default): one object per line")
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check-config", help="validate a config file, listing every problem")
    check.add_argument("path")
    check.set_defaults(run=_check_config)

    keys = commands.add_parser("keys", help="client keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = key_commands.add_parser("new", help="mint a key for a tenant")
    new.add_argument("tenant")
    new.add_argument("--id", help="the key id to put in the config (default: TENANT-xxxxxx)")
    new.set_defaults(run=_keys_new)

    encrypt = commands.add_parser("encrypt-secret", help="read a secret on stdin, print enc:... (GATEWAY_MASTER_KEY)")
    encrypt.set_defaults(run=_encrypt_secret)

    usage = commands.add_parser("usage", help="requests, tokens and spend from the configured event store")
    usage.add_argument("--config", required=True, help="path to config.yaml (its events: section)")
    usage.add_argument("--tenant", help="only this tenant")
    usage.add_argument("--since", help="from: YYYY-MM-DD, ISO 8601 (UTC unless given) or a time ago (30m, 12h, 7d, 2w)")
    usage.add_argument("--until", help="up to, excluded; same forms as --since")
    usage.add_argument("--by", default="model", choices=DIMENSIONS, help="group by (default: model)")
    usage.add_argument("--json", action="store_true", help="print the report as GET /admin/usage returns it")
    usage.set_defaults(run=_usage)

    migrate = commands.add_parser("migrate", help="bring the event store's schema to the newest version")
    migrate.add_argument("--config", required=True, help="path to config.yaml (its events: section)")
    migrate.set_defaults(run=_migrate)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        logging.config.dictConfig(logging_config(args.log_level, args.log_format))
    else:
        logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)
    try:
        result: int = args.run(args)
    except CommandFailed as failed:
        if str(failed):
            print(f"gateway {args.command}: {failed}", file=sys.stderr)
        return failed.code
    return result


if __name__ == "__main__":
    raise SystemExit(main())
