"""The `gateway` command: serve, check-config, keys new, encrypt-secret."""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import secrets as random_secrets
import signal
import sys
from collections.abc import Sequence

from gateway.config import secrets
from gateway.config.loader import ConfigError, load_file

log = logging.getLogger("gateway")


def _serve(args: argparse.Namespace) -> int:
    try:
        loaded = load_file(args.config)
    except ConfigError as exc:
        _print_problems(args.config, exc.problems)
        return 2
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

    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to the handler it found: make that
    # handler a no-op so a clean drain exits 0 instead of dying by the signal afterwards.
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, lambda *_: None)
    os.environ["GATEWAY_CONFIG"] = os.path.abspath(args.config)
    log.info("serving %s on http://%s:%d with %d worker(s)", args.config, host, port, workers)
    uvicorn.run(
        "gateway.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=args.log_level,
        timeout_graceful_shutdown=math.ceil(server.drain_timeout_s),
    )
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
    key = "sk-gw-" + random_secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    key_id = args.id or f"{args.tenant}-{random_secrets.token_hex(3)}"
    print(f"key (give it to tenant {args.tenant}; it is shown only once): {key}")
    print(f"config line for tenants.{args.tenant}.keys:")
    print(f'  - {{id: {key_id}, sha256: "{digest}"}}')
    return 0


def _encrypt_secret(args: argparse.Namespace) -> int:
    try:
        master = secrets.master_key_from_env()
        value = sys.stdin.read().rstrip("\r\n")
        if not value:
            print("gateway: nothing to encrypt on standard input", file=sys.stderr)
            return 2
        print(secrets.encrypt(value, master))
    except secrets.SecretError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
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
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "info").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
