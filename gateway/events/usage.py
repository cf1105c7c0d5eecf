"""Usage reports: requests, tokens and spend from the event store, grouped by model, day, key or tenant.

One query per report, run by whichever store is configured (`gateway usage`, `GET /admin/usage`). The
SQL is the same for both stores but for the few fragments in `DIALECTS`. An unknown cost stays
unknown: `cost_usd` sums only the known costs (None when no request of the group has one) and
`unpriced_requests` counts the requests whose cost is unknown (cost_usd NULL: a model with no known price, or
usage the provider never reported, as for a stream its client left before the usage came, whose row has no
tokens but was billed).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from gateway.events.journal import SEGMENT_GLOB
from gateway.events.store import EventStore

Dimension = Literal["model", "day", "key", "tenant"]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
UTC = dt.UTC
RELATIVE = re.compile(r"^(\d+)([mhdw])$")
RELATIVE_UNITS = MappingProxyType({"m": "minutes", "h": "hours", "d": "days", "w": "weeks"})

# the group column of each dimension, and the name it has in a report's JSON
GROUP_SQL = MappingProxyType(
    {"model": "COALESCE(model_alias, model_requested)", "key": "key_id", "tenant": "tenant", "day": None}
)
FIELD = MappingProxyType({"model": "model", "day": "day", "key": "key_id", "tenant": "tenant"})
# a key id is unique within its tenant only (acme and beta may both name a key `prod`): a key is grouped with it
OWNER_SQL = MappingProxyType({"key": "tenant"})


@dataclass(frozen=True, slots=True)
class Dialect:
    day: str  # the UTC date of `ts` as 'YYYY-MM-DD' text
    table_exists: str  # one row, one column: truthy when usage_events exists
    placeholder: Callable[[int], str]  # the n-th parameter (1-based)
    instant: Callable[[dt.datetime], Any]  # a bound for `ts`


DIALECTS: Mapping[str, Dialect] = MappingProxyType(
    {
        "sqlite": Dialect(
            # the whole seconds: date() rounds to the millisecond, which put 23:59:59.9995 in the next day
            day="date(CAST(ts AS INTEGER), 'unixepoch')",
            table_exists="SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'usage_events'",
            placeholder=lambda n: "?",
            instant=lambda moment: moment.timestamp(),
        ),
        "postgres": Dialect(
            day="to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            table_exists="SELECT to_regclass('usage_events') IS NOT NULL",
            placeholder=lambda n: f"${n}",
            instant=lambda moment: moment,
        ),
    }
)


@dataclass(frozen=True, slots=True)
class UsageRow:
    group: str | None  # the model, day (YYYY-MM-DD), key id or tenant; None: not known (e.g. a bad key)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None  # the sum of the known costs; None: no request of the group has one
    unpriced_requests: int = 0  # requests whose cost is unknown (no known price, usage unreported): not in cost_usd
    errors: int = 0  # requests whose status is not `completed`
    tenant: str | None = None  # by key: the tenant the key belongs to (key ids are unique within a tenant only)
    cache_write_tokens: int = 0  # of prompt_tokens, written to a cache (Anthropic bills them above the input price)
    reasoning_tokens: int = 0  # of completion_tokens, spent reasoning

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": self.cost_usd,
            "unpriced_requests": self.unpriced_requests,
            "errors": self.errors,
        }


def totals(rows: Sequence[UsageRow]) -> UsageRow:
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    return UsageRow(
        group=None,
        requests=sum(r.requests for r in rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        cached_tokens=sum(r.cached_tokens for r in rows),
        cache_write_tokens=sum(r.cache_write_tokens for r in rows),
        reasoning_tokens=sum(r.reasoning_tokens for r in rows),
        cost_usd=sum(costs) if costs else None,
        unpriced_requests=sum(r.unpriced_requests for r in rows),
        errors=sum(r.errors for r in rows),
    )


def report_sql(dialect: Dialect, by: Dimension, tenant: str | None, since: bool, until: bool) -> str:
    group = GROUP_SQL[by] or dialect.day
    owner = OWNER_SQL.get(by)
    conditions: list[str] = []
    for column, wanted in (("tenant =", tenant is not None), ("ts >=", since), ("ts <", until)):
        if wanted:
            conditions.append(f"{column} {dialect.placeholder(len(conditions) + 1)}")
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    return (
        f"SELECT {group} AS grp, {owner or 'NULL'} AS owner, count(*), "
        "COALESCE(sum(prompt_tokens), 0), COALESCE(sum(completion_tokens), 0), COALESCE(sum(cached_tokens), 0), "
        "COALESCE(sum(cache_write_tokens), 0), COALESCE(sum(reasoning_tokens), 0), "
        "sum(cost_usd), "
        "sum(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END), "
        "sum(CASE WHEN status <> 'completed' THEN 1 ELSE 0 END) "
        f"FROM usage_events {where}GROUP BY grp{', owner' if owner else ''}"
    )


def _sort_key(by: Dimension) -> Callable[[UsageRow], tuple[Any, ...]]:
    if by == "day":
        return lambda r: (r.group is None, r.group or "")
    # most spent first; an unknown cost after every known one; then the busiest; then by name
    return lambda r: (
        r.cost_usd is None,
        -(r.cost_usd or 0.0),
        -r.requests,
        r.group is None,
        r.group or "",
        r.tenant or "",
    )


async def usage_report(
    store: EventStore,
    *,
    by: Dimension = "model",
    tenant: str | None = None,
    since: dt.datetime | dt.date | None = None,
    until: dt.datetime | dt.date | None = None,
) -> list[UsageRow]:
    """One row per group, in the requests whose `ts` is in [since, until). A store that has no table
    yet (nothing was ever written, not migrated) has no usage: an empty report, not an error.
    Raises StoreUnreachable when the database cannot answer."""
    dialect = DIALECTS[store.name]
    [(exists,)] = await store.query(dialect.table_exists)
    if not exists:
        return []
    params: list[Any] = [tenant] if tenant is not None else []
    params += [dialect.instant(as_instant(bound)) for bound in (since, until) if bound is not None]
    sql = report_sql(dialect, by, tenant, since is not None, until is not None)
    rows = [
        UsageRow(
            group=None if group is None else str(group),
            requests=int(requests),
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            cached_tokens=int(cached),
            cache_write_tokens=int(cache_write),
            reasoning_tokens=int(reasoning),
            cost_usd=None if cost is None else float(cost),
            unpriced_requests=int(unpriced or 0),
            errors=int(errors or 0),
            tenant=None if owner is None else str(owner),
        )
        for (
            group,
            owner,
            requests,
            prompt,
            completion,
            cached,
            cache_write,
            reasoning,
            cost,
            unpriced,
            errors,
        ) in await store.query(sql, params)
    ]
    return sorted(rows, key=_sort_key(by))


# parameters, shared by the CLI and the admin API -------------------------------------------------------


def as_instant(value: dt.datetime | dt.date) -> dt.datetime:
    """A date is its midnight, UTC; a naive datetime is UTC."""
    if not isinstance(value, dt.datetime):
        return dt.datetime.combine(value, dt.time(), UTC)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def check_range(since: dt.datetime | None, until: dt.datetime | None) -> None:
    """[since, until) must hold something: a range that ends before it starts is a mistake, not an empty report."""
    if since is not None and until is not None and until <= since:
        raise ValueError(f"'until' ({until.isoformat()}) must come after 'since' ({since.isoformat()})")


def parse_instant(text: str, now: dt.datetime) -> dt.datetime:
    """`YYYY-MM-DD` (midnight UTC), an ISO 8601 time (UTC unless it says otherwise), or a time ago:
    `30m`, `12h`, `7d`, `2w`. Raises ValueError with a message for the user."""
    text = text.strip()
    relative = RELATIVE.match(text)
    if relative:
        try:
            return (now - dt.timedelta(**{RELATIVE_UNITS[relative[2]]: int(relative[1])})).replace(microsecond=0)
        except OverflowError:  # 99999999999d: before the year 1
            raise ValueError(f"{text!r} reaches back before any date") from None
    try:
        instant = as_instant(dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text))
        instant.astimezone(UTC)  # 0001-01-01T00:00+14:00 is before the year 1 in UTC: no store can hold it
        return instant
    except (ValueError, OverflowError):
        raise ValueError(
            f"{text!r} is not a date (YYYY-MM-DD), an ISO 8601 time or a time ago (30m, 12h, 7d, 2w)"
        ) from None


def parse_dimension(text: str) -> Dimension:
    if text not in DIMENSIONS:
        raise ValueError(f"{text!r} is not one of {', '.join(DIMENSIONS)}")
    return text


def pending_journal_files(spool_dir: Path) -> int:
    """Journal segments in the spool that still hold events (not yet in the store, or not yet known to
    be): a report may be missing them until a gateway replays them."""
    try:
        return sum(1 for path in spool_dir.glob(SEGMENT_GLOB) if path.stat().st_size > 0)
    except OSError:
        return 0


def _owner(row: UsageRow, by: Dimension) -> dict[str, Any]:
    """By key: whose key it is."""
    return {"tenant": row.tenant} if by in OWNER_SQL else {}


def report_json(
    rows: Sequence[UsageRow],
    by: Dimension,
    *,
    tenant: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    pending_files: int,
) -> dict[str, Any]:
    """The report as `GET /admin/usage` and `gateway usage --json` give it."""
    field = FIELD[by]
    return {
        "object": "list",
        "by": by,
        "tenant": tenant,
        "since": None if since is None else since.isoformat(),
        "until": None if until is None else until.isoformat(),
        "data": [{field: row.group, **_owner(row, by), **row.to_json()} for row in rows],
        "totals": totals(rows).to_json(),
        "pending_journal_files": pending_files,
    }


# the table `gateway usage` prints ---------------------------------------------------------------------

COLUMNS = (
    "requests",
    "prompt",
    "completion",
    "cached",
    "cache_write",
    "reasoning",
    "total",
    "cost_usd  ",
    "unpriced",
    "errors",
)


def _cells(labels: list[str], row: UsageRow) -> list[str]:
    # "+?": the cost of some requests of the group is unknown, the sum is a lower bound (the suffix is
    # always two characters wide so that the decimal points line up)
    known = "unknown" if row.cost_usd is None else f"{row.cost_usd:.6f}"
    cost = known + ("+?" if row.unpriced_requests and row.cost_usd is not None else "  ")
    numbers = (
        row.requests,
        row.prompt_tokens,
        row.completion_tokens,
        row.cached_tokens,
        row.cache_write_tokens,
        row.reasoning_tokens,
        row.total_tokens,
    )
    return [*labels, *(str(n) for n in numbers), cost, str(row.unpriced_requests), str(row.errors)]


def _label(name: str | None) -> str:
    """A group's name in the table. A model's may be whatever a client sent: one with a character that is not
    printable (a newline would make a line of its own, an escape sequence would reach the reader's terminal) is
    quoted and escaped as JSON writes it."""
    if name is None:
        return "(none)"
    return name if name.isprintable() else json.dumps(name)


def render_table(rows: Sequence[UsageRow], by: Dimension) -> list[str]:
    """An aligned table, one line per group and a totals line (text columns left, numbers right)."""
    owned = by in OWNER_SQL  # by key: a tenant column too

    def labels(row: UsageRow) -> list[str]:
        return [_label(row.group), _label(row.tenant)] if owned else [_label(row.group)]

    body = [_cells(labels(row), row) for row in rows]
    header = [FIELD[by], "tenant"] if owned else [FIELD[by]]
    lines = [[*header, *COLUMNS], *body, _cells(["total", ""] if owned else ["total"], totals(rows))]
    texts = len(header)  # text columns: left-aligned
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]

    def format_line(cells: list[str]) -> str:
        aligned = [c.ljust(w) if i < texts else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(aligned)

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return [format_line(lines[0]), *(format_line(cells) for cells in body), rule, format_line(lines[-1])]
