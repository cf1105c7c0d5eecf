"""bench/stacks.py: py-spy's collapsed stacks parsed, each sample given to one component, and the table's
arithmetic. The frame strings are py-spy's own (`py-spy record -f raw --nonblocking`, gateway and floor)."""

from __future__ import annotations

import pytest

from bench.stacks import (
    COMPONENT_NAMES,
    COMPONENTS,
    NO_FRAME,
    UNATTRIBUTED,
    Frame,
    Side,
    Stack,
    attribute,
    component_of_file,
    is_rooted,
    parse_collapsed,
    parse_frame,
    parse_line,
    rows,
    rows_of,
    tally,
)

ROOT = "<module> (gateway:6);main (gateway/cli.py:325);_serve (gateway/cli.py:99);Server.run (uvicorn/server.py:86)"
LOOP = f"{ROOT};asyncio_run (uvicorn/_compat.py:30);Runner.run (asyncio/runners.py:118)"
ASGI = (
    f"{LOOP};RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:422);"
    "Lifespan.__call__ (gateway/middleware/lifespan.py:25);Router.__call__ (gateway/router.py:44);"
    "ModelEndpoint.__call__ (gateway/endpoint.py:125);ModelEndpoint._serve (gateway/endpoint.py:151)"
)
PARSE = (
    f"{ASGI};ChatEndpoint.handle (gateway/chat.py:84);parse_chat (gateway/request_models.py:262);"
    "_parse (gateway/request_models.py:255);TypeAdapter.validate_python (pydantic/type_adapter.py:410)"
)
REDIS = "GuardedStore._call (policies/redis_store.py:420);RedisClient.run (policies/redis_client.py:226)"  # cut short
RECORDING = f"""\
{LOOP} 106
{LOOP};ResponseHandler.data_received (aiohttp/client_proto.py:359) 21
{PARSE} 11
{REDIS} 7
TypeAdapter.validate_python (pydantic/type_adapter.py:410) 1
 5
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Runner.run (asyncio/runners.py:118)", Frame("Runner.run", "asyncio/runners.py", 118)),
        ("_run_module_as_main (<frozen runpy>:198)", Frame("_run_module_as_main", "<frozen runpy>", 198)),
        ("<module> (gateway:6)", Frame("<module>", "gateway", 6)),
        (
            "wrap_app_handling_exceptions.<locals>.wrapped_app (starlette/_exception_handler.py:42)",
            Frame("wrap_app_handling_exceptions.<locals>.wrapped_app", "starlette/_exception_handler.py", 42),
        ),
        ("<lambda> (gateway/events/pipeline.py)", Frame("<lambda>", "gateway/events/pipeline.py", None)),  # --nolineno
        ("thread (0x7F0A2C1D5740)", Frame("thread", "0x7F0A2C1D5740", None)),  # --threads pseudo-frame
        ('process 1752:"gateway serve"', Frame('process 1752:"gateway serve"', "", None)),
    ],
)
def test_frames_parse_into_function_file_and_line(text: str, expected: Frame) -> None:
    assert parse_frame(text) == expected


def test_a_line_is_the_frames_root_first_and_the_sample_count() -> None:
    stack = parse_line(f"{LOOP};ResponseHandler.data_received (aiohttp/client_proto.py:359) 21\n")
    assert stack.samples == 21
    assert stack.frames[0] == Frame("<module>", "gateway", 6)
    assert stack.frames[-1] == Frame("ResponseHandler.data_received", "aiohttp/client_proto.py", 359)
    assert len(stack.frames) == 7


def test_a_count_alone_is_a_busy_thread_without_a_python_frame() -> None:
    assert parse_line(" 5") == Stack((), 5)


@pytest.mark.parametrize("line", ["Runner.run (asyncio/runners.py:118)", "Runner.run (asyncio/runners.py:118) x", ""])
def test_a_line_without_a_count_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match="not a collapsed stack line"):
        parse_line(line)


def test_a_file_parses_every_line_and_skips_blank_ones() -> None:
    stacks = parse_collapsed(RECORDING + "\n\n")
    assert [stack.samples for stack in stacks] == [106, 21, 11, 7, 1, 5]


@pytest.mark.parametrize(
    ("path", "component"),
    [
        ("uvicorn/protocols/http/httptools_impl.py", "uvicorn"),
        ("starlette/routing.py", "starlette"),
        ("aiohttp/client_reqrep.py", "upstream client"),
        ("yarl/_url.py", "upstream client"),
        ("multidict/_multidict_py.py", "upstream client"),
        ("aiohappyeyeballs/impl.py", "upstream client"),
        ("gateway/h1_client.py", "upstream client"),
        ("asyncio/runners.py", "asyncio + event loop"),
        ("asyncio/timeouts.py", "asyncio + event loop"),
        ("bench/floor.py", "floor: passthrough handler"),
        ("gateway/auth.py", "gateway: auth"),
        ("gateway/request_models.py", "gateway: request parsing/validation"),
        ("gateway/http.py", "gateway: request parsing/validation"),
        ("gateway/router.py", "gateway: routing/failover"),
        ("gateway/failover.py", "gateway: routing/failover"),
        ("adapters/openai.py", "gateway: provider translation"),
        ("gateway/chat.py", "gateway: chat endpoint"),
        ("gateway/disconnect.py", "gateway: chat endpoint"),
        ("policies/injection.py", "gateway: injection"),
        ("policies/pii.py", "gateway: PII"),
        ("gateway/guardrails.py", "gateway: PII"),
        ("policies/redis_store.py", "gateway: Redis budgets/limits"),
        ("gateway/spend.py", "gateway: Redis budgets/limits"),
        ("gateway/events/pipeline.py", "gateway: usage events"),
        ("asyncpg/connection.py", "gateway: usage events"),
        ("sqlite3/__init__.py", "gateway: usage events"),
        ("gateway/metrics.py", "gateway: metrics"),
        ("prometheus_client/metrics.py", "gateway: metrics"),
        ("gateway/logs.py", "gateway: request log"),
        ("gateway/deadlines.py", "gateway: deadlines"),
        ("opentelemetry/trace/__init__.py", "gateway: tracing"),
        ("gateway/middleware/error_boundary.py", "gateway: other"),
        ("gateway/upstream.py", "gateway: other"),
        ("policies/circuit.py", "gateway: other"),
        # full file names (py-spy --full-filenames) match after a "/"
        ("/work/main/gateway/auth.py", "gateway: auth"),
        ("/work/main/.venv/lib/python3.11/site-packages/aiohttp/client.py", "upstream client"),
        ("/usr/lib/python3.11/asyncio/base_events.py", "asyncio + event loop"),
        # nothing known: the console script, the stdlib outside asyncio, other libraries
        ("gateway", None),
        ("<frozen runpy>", None),
        ("contextlib.py", None),
        ("pydantic/type_adapter.py", None),
        ("click/core.py", None),
        ("mygateway/auth.py", None),  # a fragment matches at the start or after a "/" only
    ],
)
def test_each_file_belongs_to_the_component_of_its_longest_fragment(path: str, component: str | None) -> None:
    assert component_of_file(path) == component


def test_the_components_table_names_each_component_once_and_unattributed_last() -> None:
    names = [name for name, _ in COMPONENTS]
    assert len(names) == len(set(names))
    assert (*names, UNATTRIBUTED) == COMPONENT_NAMES
    fragments = [fragment for _, group in COMPONENTS for fragment in group]
    assert len(fragments) == len(set(fragments))


def frames(line: str) -> tuple[Frame, ...]:
    return parse_line(f"{line} 1").frames


def known(stack: tuple[Frame, ...]) -> dict[str, str | None]:
    return {frame.file: component_of_file(frame.file) for frame in stack}


@pytest.mark.parametrize(
    ("line", "component"),
    [
        (LOOP, "asyncio + event loop"),  # uvloop's C code under Runner.run
        (f"{LOOP};ResponseHandler.data_received (aiohttp/client_proto.py:359)", "upstream client"),
        (  # pydantic is not a component: its caller takes the sample
            f"{ASGI};ChatEndpoint.handle (gateway/chat.py:84);parse_chat (gateway/request_models.py:262);"
            "TypeAdapter.validate_python (pydantic/type_adapter.py:410)",
            "gateway: request parsing/validation",
        ),
        (f"{ASGI};ChatEndpoint.handle (gateway/chat.py:102)", "gateway: chat endpoint"),
        (  # a library called by the gateway takes the sample from it
            f"{ASGI};UpstreamClient.send (gateway/upstream.py:137);ClientSession._request (aiohttp/client.py:900)",
            "upstream client",
        ),
        (  # the stdlib under the gateway: the gateway's frame
            f"{ASGI};RequestLog.write (gateway/logs.py:80);dumps (json/__init__.py:231)",
            "gateway: request log",
        ),
        (
            "GuardedStore._call (policies/redis_store.py:420);RedisClient.run (policies/redis_client.py:226)",
            "gateway: Redis budgets/limits",
        ),
        (
            "Thread._bootstrap (threading.py:995);Thread.run (threading.py:982);"
            "_worker (concurrent/futures/thread.py:83);SqliteStore.write (gateway/events/sqlite_store.py:50)",
            "gateway: usage events",
        ),
        ("TypeAdapter.validate_python (pydantic/type_adapter.py:410)", UNATTRIBUTED),  # cut above any known frame
        ("_run_module_as_main (<frozen runpy>:198);_run_code (<frozen runpy>:88)", UNATTRIBUTED),
    ],
)
def test_a_sample_goes_to_the_innermost_frame_of_a_known_component(line: str, component: str) -> None:
    stack = frames(line)
    assert attribute(stack, known(stack)) == component


def test_a_sample_without_frames_is_unattributed() -> None:
    assert attribute((), {}) == UNATTRIBUTED


@pytest.mark.parametrize(
    ("line", "rooted"),
    [
        (LOOP, True),
        ("_run_module_as_main (<frozen runpy>:198);_run_code (<frozen runpy>:88)", True),
        ("Thread._bootstrap (threading.py:995);Thread.run (threading.py:982)", True),
        ("GuardedStore._call (policies/redis_store.py:420);RedisClient.run (policies/redis_client.py:226)", False),
    ],
)
def test_a_stack_is_rooted_when_it_starts_at_the_program_or_a_thread(line: str, rooted: bool) -> None:
    assert is_rooted(frames(line)) is rooted


def test_tally_counts_samples_per_component_cut_stacks_and_unattributed_leaves() -> None:
    counted = tally(parse_collapsed(RECORDING))
    assert counted.samples == {
        "asyncio + event loop": 106,
        "upstream client": 21,
        "gateway: request parsing/validation": 11,
        "gateway: Redis budgets/limits": 7,
        UNATTRIBUTED: 6,
    }
    assert counted.total == 151
    assert counted.cut == 7 + 1 + 5
    assert counted.top_unattributed() == [
        (NO_FRAME, 5),
        ("TypeAdapter.validate_python (pydantic/type_adapter.py:410)", 1),
    ]


def test_tally_takes_another_components_table() -> None:
    mine = (("web", ("uvicorn/", "starlette/")), ("everything else", ("asyncio/", "aiohttp/", "gateway/")))
    counted = tally(parse_collapsed(RECORDING), mine)
    assert counted.samples == {"everything else": 106 + 21 + 11, UNATTRIBUTED: 7 + 1 + 5}


@pytest.mark.parametrize(
    ("floor", "floor_us", "gateway", "gateway_us", "expected"),
    [
        (  # shares of each server's samples times its CPU per request; the difference is gateway minus floor
            {"uvicorn": 25, "upstream client": 75},
            400.0,
            {"uvicorn": 10, "upstream client": 20, "gateway: auth": 70},
            1000.0,
            [
                ("uvicorn", 0.25, 100.0, 0.10, 100.0, 0.0),
                ("upstream client", 0.75, 300.0, 0.20, 200.0, -100.0),
                ("gateway: auth", 0.0, 0.0, 0.70, 700.0, 700.0),
                ("total", 1.0, 400.0, 1.0, 1000.0, 600.0),
            ],
        ),
        (  # rows follow the components table (unattributed last), whatever order the counts came in
            {UNATTRIBUTED: 1, "asyncio + event loop": 3},
            800.0,
            {"gateway: other": 2, "uvicorn": 2},
            200.0,
            [
                ("uvicorn", 0.0, 0.0, 0.5, 100.0, 100.0),
                ("asyncio + event loop", 0.75, 600.0, 0.0, 0.0, -600.0),
                ("gateway: other", 0.0, 0.0, 0.5, 100.0, 100.0),
                (UNATTRIBUTED, 0.25, 200.0, 0.0, 0.0, -200.0),
                ("total", 1.0, 800.0, 1.0, 200.0, -600.0),
            ],
        ),
        (  # a component with no samples on either side has no row; a server without requests has no µs
            {"uvicorn": 4, "starlette": 0},
            None,
            {"uvicorn": 1},
            500.0,
            [("uvicorn", 1.0, None, 1.0, 500.0, None), ("total", 1.0, None, 1.0, 500.0, None)],
        ),
        (  # a server not measured: an empty column
            {},
            None,
            {"uvicorn": 1},
            500.0,
            [("uvicorn", 0.0, None, 1.0, 500.0, None), ("total", 0.0, None, 1.0, 500.0, None)],
        ),
    ],
)
def test_rows_turn_shares_into_cpu_per_request(
    floor: dict[str, int],
    floor_us: float | None,
    gateway: dict[str, int],
    gateway_us: float | None,
    expected: list[tuple[str, float, float | None, float, float | None, float | None]],
) -> None:
    found = [
        (r.component, r.floor_share, r.floor_us, r.gateway_share, r.gateway_us, r.difference_us)
        for r in rows(Side(floor, floor_us), Side(gateway, gateway_us))
    ]
    assert found == [pytest.approx(row) for row in expected]


def test_the_rows_add_up_to_the_total() -> None:
    table = rows(
        Side({"uvicorn": 3, "starlette": 5, UNATTRIBUTED: 1}, 470.0), Side({"gateway: PII": 7, "uvicorn": 2}, 1002.0)
    )
    body, total = table[:-1], table[-1]
    assert sum(r.floor_share for r in body) == pytest.approx(total.floor_share)
    assert sum(r.floor_us or 0.0 for r in body) == pytest.approx(470.0)
    assert sum(r.gateway_us or 0.0 for r in body) == pytest.approx(1002.0)
    assert sum(r.difference_us or 0.0 for r in body) == pytest.approx(total.difference_us)


def test_rows_of_reads_the_servers_records_of_a_result() -> None:
    servers: dict[str, dict[str, object]] = {
        "floor": {"samples": {"uvicorn": 1}, "server_cpu_us_per_request": 400},
        "gateway": {"problems": ["json50: 500"]},
    }
    table = rows_of(servers)
    assert [r.as_dict() for r in table] == [
        {
            "component": "uvicorn",
            "floor_share": 1.0,
            "floor_us_per_request": 400.0,
            "gateway_share": 0.0,
            "gateway_us_per_request": None,
            "difference_us_per_request": None,
        },
        {
            "component": "total",
            "floor_share": 1.0,
            "floor_us_per_request": 400.0,
            "gateway_share": 0.0,
            "gateway_us_per_request": None,
            "difference_us_per_request": None,
        },
    ]
