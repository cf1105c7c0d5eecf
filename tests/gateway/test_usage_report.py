"""Usage reports (`gateway.events.usage`) over real SQLite and real Postgres, from rows written by the
stores' own `write`, and `GET /admin/usage` on a running gateway."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from adapters.base import Usage
from gateway.admin import UsageEndpoint
from gateway.config.loader import load_text
from gateway.events import postgres_store
from gateway.events.postgres_store import PostgresStore
from gateway.events.record import RequestRecord
from gateway.events.sqlite_store import SqliteStore
from gateway.events.store import EventStore, StoreUnreachable
from gateway.events.usage import (
    DIMENSIONS,
    Dimension,
    UsageRow,
    parse_instant,
    pending_journal_files,
    render_table,
    report_json,
    totals,
    usage_report,
)
from gateway.runtime import build_runtime
from gateway.state import GatewayState
from tests.support.gateway import RunningGateway, free_port, sha
from tests.support.postgres_server import PostgresServer

T = TypeVar("T")
UTC = dt.UTC
DAY1, DAY2, DAY3 = dt.date(2026, 3, 1), dt.date(2026, 3, 2), dt.date(2026, 3, 3)


def at(day: dt.date, hour: int, minute: int = 0, second: float = 0.0) -> float:
    return dt.datetime.combine(day, dt.time(hour, minute), UTC).timestamp() + second


def record(
    request_id: str,
    ts: float,
    tenant: str | None,
    key_id: str | None,
    model: str | None,
    usage: Usage | None,
    cost: float | None,
    *,
    status: str = "completed",
    alias: bool = True,
) -> dict[str, Any]:
    return RequestRecord(
        request_id=request_id,
        endpoint="chat.completions",
        started_at=ts,
        tenant=tenant,
        key_id=key_id,
        model_requested=model,
        model_alias=model if alias else None,  # a request that failed before routing has no alias
        status=status,
        http_status=200 if status == "completed" else 502,
        usage=usage,
        cost_usd=cost,
        latency_s=0.25,
    ).to_row()


# fmt: off
ROWS = [
    record("r1", at(DAY1, 10), "acme", "acme-1", "gpt", Usage(100, 50, cached_tokens=20), 0.001),
    record("r2", at(DAY2, 9), "acme", "acme-2", "gpt", Usage(200, 100), 0.002),
    record("r3", at(DAY2, 11), "acme", "acme-1", "claude", Usage(10, 5), None),  # no known price
    record("r4", at(DAY3, 8), "beta", "beta-1", "claude", Usage(1000, 500), 0.05),
    record("r5", at(DAY3, 8, 30), "beta", "beta-1", "gpt", None, 0.0, status="failed", alias=False),
    record("r6", at(DAY3, 9), None, None, None, None, 0.0, status="blocked"),  # an unknown key
    record("r7", at(DAY1, 23, 59, 59.5), "acme", "acme-1", "claude", Usage(20, 10), 0.0003),  # still DAY1 in UTC
    record("r8", at(DAY3, 12), "acme", "acme-2", "mystery", Usage(7, 3), None),  # no price at all
    # a stream its client left before the usage came: no tokens told, cost unknown (the provider billed it)
    record("r9", at(DAY2, 12), "acme", "acme-2", "gpt", None, None, status="cancelled"),
]
# group: requests, prompt, completion, cached, cost_usd, unpriced, errors (in the report's order)
EXPECTED: dict[Dimension, list[tuple[str | None, int, int, int, int, float | None, int, int]]] = {
    "model": [
        ("claude", 3, 1030, 515, 0, 0.0503, 1, 0),
        ("gpt", 4, 300, 150, 20, 0.003, 1, 2),
        (None, 1, 0, 0, 0, 0.0, 0, 1),
        ("mystery", 1, 7, 3, 0, None, 1, 0),  # an unknown cost comes after every known one
    ],
    "day": [
        ("2026-03-01", 2, 120, 60, 20, 0.0013, 0, 0),
        ("2026-03-02", 3, 210, 105, 0, 0.002, 2, 1),
        ("2026-03-03", 4, 1007, 503, 0, 0.05, 1, 2),
    ],
    "key": [
        ("beta-1", 2, 1000, 500, 0, 0.05, 0, 1),
        ("acme-2", 3, 207, 103, 0, 0.002, 2, 1),
        ("acme-1", 3, 130, 65, 20, 0.0013, 1, 0),
        (None, 1, 0, 0, 0, 0.0, 0, 1),
    ],
    "tenant": [
        ("beta", 2, 1000, 500, 0, 0.05, 0, 1),
        ("acme", 6, 337, 168, 20, 0.0033, 3, 1),
        (None, 1, 0, 0, 0, 0.0, 0, 1),
    ],
}
# fmt: on


def flat(rows: list[UsageRow]) -> list[tuple[Any, ...]]:
    return [
        (
            r.group,
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.cached_tokens,
            None if r.cost_usd is None else round(r.cost_usd, 9),
            r.unpriced_requests,
            r.errors,
        )
        for r in rows
    ]


Opener = Callable[[], EventStore]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the parametrized kind of store on one empty database (a fresh SQLite file or Postgres database)."""
    if request.param == "sqlite":
        path = str(tmp_path / "usage.sqlite")
        return lambda: SqliteStore(path)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    dsn = server.fresh_database("usage_report")
    return lambda: PostgresStore(dsn)


def with_store(store: EventStore, use: Callable[[EventStore], Awaitable[T]]) -> T:
    async def run() -> T:
        try:
            return await use(store)
        finally:
            await store.close()

    return asyncio.run(run())


@pytest.fixture
def filled(opener: Opener) -> Opener:
    """The store, migrated, holding ROWS: written in two batches, then the first two again (a replay must
    not count twice)."""

    async def fill(store: EventStore) -> None:
        assert await store.migrate() == [1]
        await store.write(ROWS[:4])
        await store.write(ROWS[4:])
        await store.write(ROWS[:2])

    with_store(opener(), fill)
    return opener


@pytest.mark.parametrize("by", DIMENSIONS)
def test_report_by_each_dimension(filled: Opener, by: Dimension) -> None:
    rows = with_store(filled(), lambda store: usage_report(store, by=by))
    assert flat(rows) == EXPECTED[by]
    total = totals(rows)
    assert (total.requests, total.prompt_tokens, total.completion_tokens, total.cached_tokens) == (9, 1337, 668, 20)
    assert (total.total_tokens, total.unpriced_requests, total.errors) == (2005, 3, 3)
    assert total.cost_usd == pytest.approx(0.0533)


def test_filters(filled: Opener) -> None:
    async def reports(store: EventStore) -> dict[str, list[UsageRow]]:
        return {
            "acme": await usage_report(store, by="model", tenant="acme"),
            "nobody": await usage_report(store, by="model", tenant="nobody"),
            "since_day2": await usage_report(store, by="day", since=DAY2),
            "until_day2": await usage_report(store, by="day", until=DAY2),
            "window": await usage_report(
                store, by="key", tenant="acme", since=dt.datetime(2026, 3, 1, 12), until=dt.datetime(2026, 3, 2, 10)
            ),
            "aware": await usage_report(
                store, by="tenant", since=dt.datetime(2026, 3, 3, 10, tzinfo=dt.timezone(dt.timedelta(hours=2)))
            ),
        }

    got = with_store(filled(), reports)
    assert flat(got["acme"]) == [
        ("gpt", 3, 300, 150, 20, 0.003, 1, 1),
        ("claude", 2, 30, 15, 0, 0.0003, 1, 0),
        ("mystery", 1, 7, 3, 0, None, 1, 0),
    ]
    assert got["nobody"] == []
    assert flat(got["since_day2"]) == EXPECTED["day"][1:]
    assert flat(got["until_day2"]) == EXPECTED["day"][:1]
    # [12:00 on day 1, 10:00 on day 2): r7 (23:59:59.5) and r2 (09:00)
    assert flat(got["window"]) == [("acme-2", 1, 200, 100, 0, 0.002, 0, 0), ("acme-1", 1, 20, 10, 0, 0.0003, 0, 0)]
    # 10:00 at UTC+2 is 08:00 UTC: r4, r5, r6, r8 on day 3
    assert flat(got["aware"]) == [
        ("beta", 2, 1000, 500, 0, 0.05, 0, 1),
        (None, 1, 0, 0, 0, 0.0, 0, 1),
        ("acme", 1, 7, 3, 0, None, 1, 0),
    ]


def test_a_store_never_written_has_an_empty_report(opener: Opener) -> None:
    """No table yet (nothing written, not migrated): no usage, not an error."""

    async def report(store: EventStore) -> tuple[list[UsageRow], list[UsageRow]]:
        before = await usage_report(store, by="day")
        await store.migrate()
        return before, await usage_report(store, by="day", tenant="acme")

    assert with_store(opener(), report) == ([], [])


def test_unreachable_stores_raise_store_unreachable(tmp_path: Path) -> None:
    for store in (
        PostgresStore(f"postgresql://gateway:pw@127.0.0.1:{free_port()}/nothing"),
        SqliteStore(str(tmp_path)),  # a directory, not a database file
    ):
        with pytest.raises(StoreUnreachable):
            with_store(store, lambda s: usage_report(s, by="model"))


def test_parse_instant() -> None:
    now = dt.datetime(2026, 3, 10, 12, 30, 15, 999, tzinfo=UTC)
    assert parse_instant("2026-03-01", now) == dt.datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_instant("2026-03-01T08:00:00", now) == dt.datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert parse_instant("2026-03-01T08:00:00Z", now) == dt.datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert parse_instant("2026-03-01T10:00+02:00", now) == dt.datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert parse_instant("7d", now) == dt.datetime(2026, 3, 3, 12, 30, 15, tzinfo=UTC)
    assert parse_instant("12h", now) == dt.datetime(2026, 3, 10, 0, 30, 15, tzinfo=UTC)
    assert parse_instant("30m", now) == dt.datetime(2026, 3, 10, 12, 0, 15, tzinfo=UTC)
    assert parse_instant("2w", now) == dt.datetime(2026, 2, 24, 12, 30, 15, tzinfo=UTC)
    for bad in ("yesterday", "7", "7y", "-7d", "2026-13-01", ""):
        with pytest.raises(ValueError, match="is not a date"):
            parse_instant(bad, now)
    for too_far in ("99999999999d", "1000000d", "9999999w"):  # a ValueError (a 400), not an OverflowError (a 500)
        with pytest.raises(ValueError, match="before any date"):
            parse_instant(too_far, now)


def test_render_table_aligns_and_totals() -> None:
    rows = [
        UsageRow("gpt", 3, 300, 150, 20, 0.003, 0, 1),
        UsageRow("claude", 2, 30, 15, 0, 0.0003, 1, 0),
        UsageRow("mystery", 1, 7, 3, 0, None, 1, 0),
        UsageRow(None, 1, cost_usd=0.0),
    ]
    assert render_table(rows, "model") == [
        "model    requests  prompt  completion  cached  cache_write  reasoning  total  cost_usd    unpriced  errors",
        "gpt             3     300         150      20            0          0    450  0.003000           0       1",
        "claude          2      30          15       0            0          0     45  0.000300+?         1       0",
        "mystery         1       7           3       0            0          0     10   unknown           1       0",
        "(none)          1       0           0       0            0          0      0  0.000000           0       0",
        "----------------------------------------------------------------------------------------------------------",
        "total           7     337         168      20            0          0    505  0.003300+?         2       1",
    ]


def test_pending_journal_files_count_only_segments_with_content(tmp_path: Path) -> None:
    assert pending_journal_files(tmp_path / "missing") == 0
    (tmp_path / "journal-1-1-000001.jsonl").write_text('{"request_id": "x"}\n')
    (tmp_path / "journal-2-1-000002.jsonl").write_text("")  # emptied once its rows were committed
    (tmp_path / "journal-3-1-000003.new").write_text("")
    (tmp_path / "other.jsonl").write_text("{}\n")
    assert pending_journal_files(tmp_path) == 1


# GET /admin/usage on a running gateway --------------------------------------------------------------------

ADMIN_TOKEN = "usage-admin-token"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
ACME_KEY = "sk-test-usage-acme"
BETA_KEY = "sk-test-usage-beta"


def admin_config(tmp_path: Path) -> str:
    return f"""
events: {{sqlite_path: '{tmp_path}/usage.sqlite', spool_dir: '{tmp_path}/spool'}}
admin: {{token_sha256: "{sha(ADMIN_TOKEN)}"}}
providers:
  demo: {{type: mock}}
models:
  priced: {{deployments: [{{provider: demo, model: mock-1}}]}}
  unpriced: {{deployments: [{{provider: demo, model: mock-without-a-price}}]}}
pricing:
  priced: {{input: 1000, output: 2000}}
tenants:
  acme:
    keys: [{{id: acme-usage, sha256: "{sha(ACME_KEY)}"}}]
    models: ["*"]
  beta:
    keys: [{{id: beta-usage, sha256: "{sha(BETA_KEY)}"}}]
    models: [priced]
"""


@pytest.fixture
def usage_gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    running = RunningGateway(admin_config(tmp_path)).start()
    try:
        yield running
    finally:
        running.stop()


def chat(gateway: RunningGateway, key: str, model: str, content: str) -> dict[str, Any]:
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": content}]},
        headers={"authorization": f"Bearer {key}"},
    )
    body: dict[str, Any] = response.json()
    body["status"] = response.status_code
    return body


def poll_usage(gateway: RunningGateway, requests: int, **params: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        response = httpx.get(gateway.url + "/admin/usage", params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        report: dict[str, Any] = response.json()
        if report["totals"]["requests"] >= requests or time.monotonic() > deadline:
            return report
        time.sleep(0.05)


def test_admin_usage_endpoint(usage_gateway: RunningGateway) -> None:
    gateway = usage_gateway
    assert httpx.get(gateway.url + "/admin/usage").status_code == 401
    assert httpx.get(gateway.url + "/admin/usage", headers={"authorization": "Bearer nope"}).status_code == 401
    empty = httpx.get(gateway.url + "/admin/usage", headers=ADMIN).json()
    assert empty["data"] == [] and empty["totals"]["requests"] == 0 and empty["totals"]["cost_usd"] is None

    today = dt.datetime.now(UTC).date().isoformat()
    answers = [
        chat(gateway, ACME_KEY, "priced", "hello there"),
        chat(gateway, ACME_KEY, "priced", "a second, longer question for the mock"),
        chat(gateway, ACME_KEY, "unpriced", "what does this cost?"),
        chat(gateway, BETA_KEY, "priced", "hi"),
        chat(gateway, BETA_KEY, "unpriced", "not allowed"),  # 403: blocked, no tokens
    ]
    assert [a["status"] for a in answers] == [200, 200, 200, 200, 403]
    usage = [a["usage"] for a in answers[:4]]

    def cost(u: dict[str, int]) -> float:
        return (u["prompt_tokens"] * 1000 + u["completion_tokens"] * 2000) / 1_000_000

    report = poll_usage(gateway, 5)
    assert report["object"] == "list" and report["by"] == "model"
    assert report["tenant"] is None and report["since"] is None and report["until"] is None
    priced, unpriced = report["data"]
    assert priced["model"] == "priced" and unpriced["model"] == "unpriced"
    assert priced["requests"] == 3 and priced["errors"] == 0 and priced["unpriced_requests"] == 0
    assert priced["prompt_tokens"] == sum(u["prompt_tokens"] for u in (usage[0], usage[1], usage[3]))
    assert priced["completion_tokens"] == sum(u["completion_tokens"] for u in (usage[0], usage[1], usage[3]))
    assert priced["total_tokens"] == priced["prompt_tokens"] + priced["completion_tokens"]
    assert priced["cost_usd"] == pytest.approx(cost(usage[0]) + cost(usage[1]) + cost(usage[3]))
    # the unknown price stays unknown; the blocked request (cost 0, no tokens) is an error, not unpriced
    assert unpriced["requests"] == 2 and unpriced["errors"] == 1 and unpriced["unpriced_requests"] == 1
    assert unpriced["cost_usd"] == 0.0
    assert unpriced["total_tokens"] == usage[2]["total_tokens"]
    assert report["totals"]["requests"] == 5
    assert report["totals"]["cost_usd"] == pytest.approx(priced["cost_usd"])
    assert report["totals"]["unpriced_requests"] == 1

    by_key = poll_usage(gateway, 3, by="key", tenant="acme", since="1d")
    assert by_key["by"] == "key" and by_key["tenant"] == "acme" and by_key["since"] is not None
    assert [(row["key_id"], row["requests"]) for row in by_key["data"]] == [("acme-usage", 3)]
    by_day = poll_usage(gateway, 5, by="day", since=today)
    assert by_day["data"][0]["day"] == today and sum(row["requests"] for row in by_day["data"]) == 5
    future = poll_usage(gateway, 0, since="2999-01-01")
    assert future["data"] == [] and future["totals"]["requests"] == 0

    for params, param in (
        ({"by": "week"}, "by"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-02-30"}, "until"),
        ({"tenants": "acme"}, "tenants"),
        ({"by": ["day", "key"]}, "by"),
        ({"tenant": "a\x00b"}, "tenant"),
        ({"since": "7d", "until": "10d"}, "until"),  # a range that ends before it starts
    ):
        response = httpx.get(gateway.url + "/admin/usage", params=params, headers=ADMIN)
        assert response.status_code == 400, params
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert httpx.post(gateway.url + "/admin/usage", headers=ADMIN).status_code == 405


def test_admin_usage_with_the_store_down(tmp_path: Path) -> None:
    """Postgres unreachable: the report is a 503 (requests themselves keep being journaled)."""
    config = admin_config(tmp_path).replace(
        f"sqlite_path: '{tmp_path}/usage.sqlite'", f"postgres_dsn: 'postgresql://gateway@127.0.0.1:{free_port()}/x'"
    )
    running = RunningGateway(config).start()
    try:
        assert chat(running, ACME_KEY, "priced", "hello")["status"] == 200
        response = httpx.get(running.url + "/admin/usage", headers=ADMIN)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "event_store_unavailable" and "127.0.0.1" not in error["message"]
    finally:
        running.stop()


def test_admin_usage_without_a_running_pipeline(tmp_path: Path) -> None:
    """An app whose lifespan did not run (no pipeline) reads the configured store for the one query."""
    with_store(SqliteStore(str(tmp_path / "usage.sqlite")), lambda store: store.migrate())
    with_store(SqliteStore(str(tmp_path / "usage.sqlite")), lambda store: store.write(ROWS))
    state = GatewayState(runtime=build_runtime(load_text(admin_config(tmp_path))))
    assert state.pipeline is None

    async def get(query: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=UsageEndpoint(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.get("/admin/usage?" + query, headers=ADMIN)

    response = asyncio.run(get("by=tenant&since=2026-03-02&until="))
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["since"], report["until"]) == ("2026-03-02T00:00:00+00:00", None)
    assert [(r["tenant"], r["requests"]) for r in report["data"]] == [("beta", 2), ("acme", 4), (None, 1)]


def test_a_bound_before_the_year_1_in_utc_is_refused_as_bad_input() -> None:
    """Postgres would refuse it as a store error ("unreachable", 503); it is the caller's 400."""
    with pytest.raises(ValueError, match="not a date"):
        parse_instant("0001-01-01T00:00:00+14:00", dt.datetime.now(UTC))


def test_a_key_id_two_tenants_use_is_two_rows(opener: Opener) -> None:
    """Key ids are unique within a tenant only (the config allows `prod` in acme and in beta): by key, the
    report keeps each tenant's key apart and says whose it is, never one row summing both."""
    shared = [
        record("k1", at(DAY1, 10), "acme", "prod", "gpt", Usage(100, 50), 0.001),
        record("k2", at(DAY1, 11), "beta", "prod", "gpt", Usage(1000, 500), 0.01),
        record("k3", at(DAY1, 12), "beta", "prod", "gpt", Usage(10, 5), 0.0001),
        record("k4", at(DAY1, 13), None, None, None, None, 0.0, status="blocked"),  # an unknown key
    ]

    async def report(store: EventStore) -> tuple[list[UsageRow], list[UsageRow]]:
        await store.migrate()
        await store.write(shared)
        return await usage_report(store, by="key"), await usage_report(store, by="key", tenant="acme")

    everyone, acme = with_store(opener(), report)
    assert [(r.group, r.tenant, r.requests, r.total_tokens) for r in everyone] == [
        ("prod", "beta", 2, 1515),
        ("prod", "acme", 1, 150),
        (None, None, 1, 0),
    ]
    assert [(r.group, r.tenant, r.requests) for r in acme] == [("prod", "acme", 1)]
    data = report_json(everyone, "key", tenant=None, since=None, until=None, pending_files=0)["data"]
    assert [(entry["key_id"], entry["tenant"], entry["requests"]) for entry in data] == [
        ("prod", "beta", 2),
        ("prod", "acme", 1),
        (None, None, 1),
    ]
    assert render_table(everyone, "key")[:4] == [
        "key_id  tenant  requests  prompt  completion  cached  "
        "cache_write  reasoning  total  cost_usd    unpriced  errors",
        "prod    beta           2    1010         505       0  "
        "          0          0   1515  0.010100           0       0",
        "prod    acme           1     100          50       0  "
        "          0          0    150  0.001000           0       0",
        "(none)  (none)         1       0           0       0  "
        "          0          0      0  0.000000           0       1",
    ]


def test_the_table_prints_a_clients_model_name_on_its_own_line_without_its_control_characters() -> None:
    """The model of a request that failed before routing is whatever its client sent (up to 256 characters of
    anything): a newline in it must not make a line of the report (a forged row), nor an escape sequence reach
    the terminal of whoever reads it. Such a name is quoted and escaped as JSON writes it; others are as they are."""
    rows = [
        UsageRow("gpt", 1, 10, 5, cost_usd=0.001),
        UsageRow("evil\nforged   999  0.000000", 1, errors=1, cost_usd=0.0),
        UsageRow("\x1b[2J\x1b[31mred\u202e", 1, errors=1, cost_usd=0.0),
        UsageRow('café, "q"', 1, errors=1, cost_usd=0.0),
    ]
    lines = render_table(rows, "model")
    assert len(lines) == len(rows) + 3  # header, rows, rule, total
    assert all(line.isprintable() for line in lines)
    width = lines[0].index("requests")  # the label column, and the two spaces after it
    labels = [line[:width].rstrip() for line in lines[1:-2]]
    assert labels == ["gpt", '"evil\\nforged   999  0.000000"', '"\\u001b[2J\\u001b[31mred\\u202e"', 'café, "q"']


def test_a_request_in_a_days_last_millisecond_is_reported_in_that_day(opener: Opener) -> None:
    """SQLite's date() rounds a time to the millisecond: 23:59:59.9997 was reported as the next day, in a report
    by day from SQLite (not from Postgres), and even in one whose range ends at midnight, which the row is in."""
    last = record("late", at(DAY1, 23, 59, 59.9997), "acme", "acme-1", "gpt", Usage(10, 5), 0.001)
    first = record("early", at(DAY2, 0), "acme", "acme-1", "gpt", Usage(20, 10), 0.002)

    async def report(store: EventStore) -> tuple[list[UsageRow], list[UsageRow]]:
        await store.migrate()
        await store.write([last, first])
        return await usage_report(store, by="day"), await usage_report(store, by="day", since=DAY1, until=DAY2)

    every_day, day1 = with_store(opener(), report)
    assert [(r.group, r.requests, r.total_tokens) for r in every_day] == [
        (DAY1.isoformat(), 1, 15),
        (DAY2.isoformat(), 1, 30),
    ]
    assert [(r.group, r.requests) for r in day1] == [(DAY1.isoformat(), 1)]


def test_postgres_reports_never_hold_back_event_writes_nor_share_their_timeout(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report reads what may be months of rows: seconds, or minutes. It ran on the writer's pool (two
    connections) under the writer's 10 s bound: two reports at once left a batch no connection (the events were
    spooled, the gateway degraded, with Postgres up), a third report was a 503 'unreachable', and a report
    longer than 10 s could never be had. Reports now have their own connections and a bound of their own."""
    from gateway.events import postgres_store

    monkeypatch.setattr(postgres_store, "CALL_TIMEOUT_S", 1.0)  # a write's bound, made short for the test
    monkeypatch.setattr(postgres_store, "CONNECT_TIMEOUT_S", 1.0)
    dsn = postgres_server.fresh_database("slow_reports")

    async def scenario(store: EventStore) -> tuple[float, list[tuple[Any, ...]]]:
        await store.migrate()
        slow = [asyncio.create_task(store.query("SELECT pg_sleep(1.5), 'done'")) for _ in range(3)]
        await asyncio.sleep(0.2)  # the reports hold their connections
        started = time.monotonic()
        await store.write(ROWS[:2])
        written_in = time.monotonic() - started
        answers = [row for rows in await asyncio.gather(*slow) for row in rows]
        return written_in, answers

    written_in, answers = with_store(PostgresStore(dsn), scenario)
    assert written_in < 1.0
    assert [answer[1] for answer in answers] == ["done"] * 3


def test_postgres_reports_asked_at_once_on_a_fresh_store_share_one_pool(postgres_server: PostgresServer) -> None:
    """The reports' pool is made on first use: reports asked at once before it exists must share it, not each make
    one (all but the last lost, never closed, their connections left open on the server). asyncpg makes a pool
    with no minimum without waiting today; with a wait at its creation (tried), this saw 9 connections."""
    dsn = postgres_server.fresh_database("report_pools")

    async def scenario(store: EventStore) -> int:
        await store.migrate()  # the writer's pool: one connection
        await asyncio.gather(*(store.query("SELECT 1") for _ in range(8)))
        rows = await store.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return int(rows[0][0])

    assert with_store(PostgresStore(dsn), scenario) <= 1 + postgres_store.REPORT_CONNECTIONS


def test_cache_writes_and_reasoning_tokens_are_reported(opener: Opener) -> None:
    """The events hold the prompt tokens written to a cache (Anthropic bills them above the input price) and the
    completion tokens spent reasoning: the report sums them too, as it sums the cache reads."""
    rows = [
        record("w1", at(DAY1, 10), "acme", "acme-1", "claude", Usage(1000, 50, 200, cache_write_tokens=300), 0.01),
        record("w2", at(DAY1, 11), "acme", "acme-1", "claude", Usage(500, 20, cache_write_tokens=100), 0.005),
        record("w3", at(DAY1, 12), "acme", "acme-1", "o3", Usage(10, 400, reasoning_tokens=350), 0.02),
    ]  # fmt: skip

    async def report(store: EventStore) -> list[UsageRow]:
        await store.migrate()
        await store.write(rows)
        return await usage_report(store, by="model")

    got = with_store(opener(), report)
    assert [(r.group, r.cached_tokens, r.cache_write_tokens, r.reasoning_tokens) for r in got] == [
        ("o3", 0, 0, 350),
        ("claude", 200, 400, 0),
    ]
    summed = totals(got)
    assert (summed.cached_tokens, summed.cache_write_tokens, summed.reasoning_tokens) == (200, 400, 350)
    data = report_json(got, "model", tenant=None, since=None, until=None, pending_files=0)
    assert [(e["cache_write_tokens"], e["reasoning_tokens"]) for e in data["data"]] == [(0, 350), (400, 0)]
    assert (data["totals"]["cache_write_tokens"], data["totals"]["reasoning_tokens"]) == (400, 350)
    assert render_table(got, "model")[:3] == [
        "model   requests  prompt  completion  cached  cache_write  reasoning  total  cost_usd    unpriced  errors",
        "o3             1      10         400       0            0        350    410  0.020000           0       0",
        "claude         2    1500          70     200          400          0   1570  0.015000           0       0",
    ]
