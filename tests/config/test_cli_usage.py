"""`gateway usage` and `gateway migrate`, run as real subprocesses against SQLite and Postgres."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from adapters.base import Usage
from gateway.events.postgres_store import PostgresStore
from gateway.events.record import RequestRecord
from gateway.events.sqlite_store import SqliteStore
from gateway.events.store import EventStore
from tests.support.gateway import free_port
from tests.support.postgres_server import PostgresServer

REPO = Path(__file__).resolve().parents[2]
UTC = dt.UTC


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_config(directory: Path, events: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(f"events: {events}\nproviders: {{demo: {{type: mock}}}}\n", encoding="utf-8")
    return path


def row(request_id: str, day: int, hour: int, tenant: str, key_id: str, model: str, usage: Usage, cost: float | None,
        status: str = "completed") -> dict[str, Any]:  # fmt: skip
    started = dt.datetime(2026, 3, day, hour, tzinfo=UTC).timestamp()
    return RequestRecord(
        request_id, "chat", started, tenant=tenant, key_id=key_id, model_requested=model, model_alias=model,
        status=status, http_status=200 if status == "completed" else 502, usage=usage, cost_usd=cost,
    ).to_row()  # fmt: skip


ROWS = [
    row("c1", 1, 10, "acme", "acme-prod", "gpt-4o-mini", Usage(1200, 300, cached_tokens=200), 0.00036),
    row("c2", 2, 11, "acme", "acme-prod", "gpt-4o-mini", Usage(800, 200), 0.00024),
    row("c3", 2, 12, "acme", "acme-ci", "my-local-llama", Usage(500, 100), None),
    row("c4", 3, 9, "globex", "globex-1", "claude-haiku", Usage(2000, 1000), 0.0056),
    row("c5", 3, 10, "globex", "globex-1", "claude-haiku", Usage(), 0.0, status="failed"),
]


def fill(store: EventStore) -> None:
    async def write() -> None:
        try:
            await store.migrate()
            await store.write(ROWS)
        finally:
            await store.close()

    asyncio.run(write())


@pytest.fixture
def sqlite_config(tmp_path: Path) -> Path:
    fill(SqliteStore(str(tmp_path / "usage.sqlite")))
    return write_config(tmp_path, "{sqlite_path: usage.sqlite, spool_dir: spool}")  # relative: from the cwd


def test_usage_table_by_model(sqlite_config: Path) -> None:
    result = run(sqlite_config.parent, "usage", "--config", str(sqlite_config))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "usage by model, all tenants (sqlite usage.sqlite)",
        "model           requests  prompt  completion  cached  "
        "cache_write  reasoning  total  cost_usd    unpriced  errors",
        "claude-haiku           2    2000        1000       0  "
        "          0          0   3000  0.005600           0       1",
        "gpt-4o-mini            2    2000         500     200  "
        "          0          0   2500  0.000600           0       0",
        "my-local-llama         1     500         100       0  "
        "          0          0    600   unknown           1       0",
        "------------------------------------------------------"
        "-----------------------------------------------------------",
        "total                  5    4500        1600     200  "
        "          0          0   6100  0.006200+?         1       1",
        "note: cost_usd leaves out 1 request(s) whose cost is unknown (+?): a model with no known price, or usage the "
        "provider never reported",
    ]


def test_usage_filters_group_by_day_and_key(sqlite_config: Path) -> None:
    args = ("usage", "--config", str(sqlite_config), "--tenant", "acme", "--since", "2026-03-02")
    by_day = run(sqlite_config.parent, *args, "--by", "day")
    assert by_day.returncode == 0, by_day.stderr
    assert by_day.stdout.splitlines()[:4] == [
        "usage by day, tenant acme, since 2026-03-02T00:00:00+00:00 (sqlite usage.sqlite)",
        "day         requests  prompt  completion  cached  cache_write  reasoning  total  cost_usd    unpriced  errors",
        "2026-03-02         2    1300         300       0            0          0   1600  0.000240+?         1       0",
        "-------------------------------------------------------------------------------------------------------------",
    ]
    by_key = run(sqlite_config.parent, *args, "--until", "2026-03-02T12:00", "--by", "key", "--json")
    assert by_key.returncode == 0, by_key.stderr
    report = json.loads(by_key.stdout)
    assert report["until"] == "2026-03-02T12:00:00+00:00"
    assert [(r["key_id"], r["requests"], r["total_tokens"]) for r in report["data"]] == [("acme-prod", 1, 1000)]


def test_usage_json_is_the_same_from_sqlite_and_postgres(
    sqlite_config: Path, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    dsn = postgres_server.fresh_database("cli_usage")
    fill(PostgresStore(dsn))
    pg_dir = tmp_path / "pg"
    pg_dir.mkdir()
    pg_config = write_config(pg_dir, f"{{postgres_dsn: '{dsn}', spool_dir: spool}}")
    for by in ("model", "day", "key", "tenant"):
        reports = [
            json.loads(run(config.parent, "usage", "--config", str(config), "--by", by, "--json").stdout)
            for config in (sqlite_config, pg_config)
        ]
        for report in reports:  # summed in a different order: equal to the last few bits
            for entry in [*report["data"], report["totals"]]:
                entry["cost_usd"] = None if entry["cost_usd"] is None else round(entry["cost_usd"], 12)
        assert reports[0] == reports[1]
        assert reports[0]["by"] == by and reports[0]["object"] == "list"
        assert reports[0]["totals"] == {
            "requests": 5,
            "prompt_tokens": 4500,
            "completion_tokens": 1600,
            "cached_tokens": 200,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "total_tokens": 6100,
            "cost_usd": 0.0062,
            "unpriced_requests": 1,
            "errors": 1,
        }
    table = run(pg_dir, "usage", "--config", str(pg_config), "--by", "tenant")
    assert (
        table.stdout.splitlines()[0]
        == f"usage by tenant, all tenants (postgres 127.0.0.1:{postgres_server.port}/cli_usage)"
    )


def test_usage_notes_pending_journal_files(sqlite_config: Path) -> None:
    spool = sqlite_config.parent / "spool"
    spool.mkdir()
    (spool / "journal-00000000000000000001-1-000001.jsonl").write_text('{"request_id": "x"}\n')
    (spool / "journal-00000000000000000002-1-000001.jsonl").write_text('{"request_id": "y"}\n')
    (spool / "journal-00000000000000000003-1-000001.jsonl").write_text("")  # emptied: nothing pending
    result = run(sqlite_config.parent, "usage", "--config", str(sqlite_config))
    assert result.stdout.splitlines()[-1] == (
        "note: 2 journal file(s) in spool hold events not yet in the store "
        "(a running gateway writes them; a stopped one replays them at its next start)"
    )
    report = json.loads(run(sqlite_config.parent, "usage", "--config", str(sqlite_config), "--json").stdout)
    assert report["pending_journal_files"] == 2


def test_usage_of_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, "{sqlite_path: nowhere/usage.sqlite}")
    result = run(tmp_path, "usage", "--config", str(config), "--by", "day")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "usage by day, all tenants (sqlite nowhere/usage.sqlite)",
        "no requests recorded in this range",
        "note: nowhere/usage.sqlite does not exist (relative paths are from the working directory)",
    ]
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "last tuesday"), "bad argument: 'last tuesday' is not a date (YYYY-MM-DD), an ISO 8601 time"),
        (("--until", "2026-02-30"), "bad argument: '2026-02-30' is not a date"),
        (("--since", "7d", "--until", "10d"), "bad argument: 'until' ("),  # a range that ends before it starts
    ],
)
def test_usage_bad_arguments(sqlite_config: Path, args: tuple[str, ...], message: str) -> None:
    result = run(sqlite_config.parent, "usage", "--config", str(sqlite_config), *args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"gateway usage: {message}")
    assert result.stderr.count("\n") == 1


def test_unreachable_postgres_is_one_line_without_the_password(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, f"{{postgres_dsn: 'postgresql://reporter:hunter2-secret@127.0.0.1:{port}/usage'}}")
    usage = run(tmp_path, "usage", "--config", str(config))
    migrate = run(tmp_path, "migrate", "--config", str(config))
    assert (usage.returncode, migrate.returncode) == (2, 1)
    for result, command in ((usage, "usage"), (migrate, "migrate")):
        assert result.stdout == ""
        assert result.stderr == (
            f"gateway {command}: the event store (postgres 127.0.0.1:{port}/usage) is unreachable: "
            "ConnectionRefusedError\n"
        )
        assert "hunter2" not in result.stderr


def test_bad_config_is_reported_like_check_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("events: {sqlite_path: 3, colour: red}\n")
    for command in ("usage", "migrate"):
        result = run(tmp_path, command, "--config", str(config))
        assert result.returncode == 2
        assert result.stderr == (
            f"{config}: 2 problem(s)\n  events.sqlite_path: input should be a valid string\n"
            "  events.colour: unknown field\n"
        )
        assert "Traceback" not in result.stderr


def test_migrate_sqlite_then_up_to_date(tmp_path: Path) -> None:
    config = write_config(tmp_path, "{sqlite_path: data/usage.sqlite}")
    first = run(tmp_path, "migrate", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert first.stdout == "sqlite data/usage.sqlite: applied migration(s) 1; schema at version 1\n"
    again = run(tmp_path, "migrate", "--config", str(config))
    assert again.returncode == 0, again.stderr
    assert again.stdout == "sqlite data/usage.sqlite: up to date (schema version 1)\n"
    empty = run(tmp_path, "usage", "--config", str(config))
    assert empty.stdout.splitlines()[1] == "no requests recorded in this range"


def test_migrate_postgres(postgres_server: PostgresServer, tmp_path: Path) -> None:
    dsn = postgres_server.fresh_database("cli_migrate")
    config = write_config(tmp_path, f"{{postgres_dsn: '{dsn}'}}")
    label = f"postgres 127.0.0.1:{postgres_server.port}/cli_migrate"
    first = run(tmp_path, "migrate", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"{label}: applied migration(s) 1; schema at version 1\n"
    assert postgres_server.psql("SELECT version FROM gateway_schema_migrations", database="cli_migrate") == "1"
    again = run(tmp_path, "migrate", "--config", str(config))
    assert again.stdout == f"{label}: up to date (schema version 1)\n"


@pytest.mark.parametrize("password", ["Pa/Ss-w0rd", "Pa?Ss-w0rd", "Pa#Ss-w0rd", "Pa@Ss/w0rd"])
def test_a_dsn_whose_password_is_not_escaped_is_refused_without_showing_it(tmp_path: Path, password: str) -> None:
    """A / ? or # in the password ends the URL's address early: before, the config loaded, the driver refused the
    DSN (ValueError), and the message named the store by what it took for the address and path, password and
    all: 'the event store (postgres gw:Pa/Ss-w0rd@127.0.0.1:5499/usage) is unreachable: ValueError'."""
    config = write_config(tmp_path, f"{{postgres_dsn: 'postgresql://gw:{password}@127.0.0.1:{free_port()}/usage'}}")
    for command in ("usage", "migrate"):
        result = run(tmp_path, command, "--config", str(config))
        assert result.returncode == 2
        assert result.stderr == (
            f"{config}: 1 problem(s)\n  events.postgres_dsn: must be a valid postgresql:// URL (a / ? # or @ in the "
            "password must be %-escaped)\n"
        )
        assert "w0rd" not in result.stdout + result.stderr
    escaped = write_config(tmp_path, f"{{postgres_dsn: 'postgresql://gw:{quote(password, safe='')}@127.0.0.1:1/u'}}")
    assert run(tmp_path, "check-config", str(escaped)).returncode == 0
