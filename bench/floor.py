"""The floor: the least a Python gateway can do, against which the gateway's own overhead is judged.

A Starlette app that reads the body, forwards it to the mock upstream with one shared aiohttp
ClientSession (the client the gateway uses, configured as gateway/upstream.py does) and returns the
answer: JSON whole, SSE chunk by chunk as each arrives. No auth, no parsing, no policies. It mirrors the
mock's paths (bench/mock/), forwarding each to the same path upstream: `<delay>/v1/chat/completions`
(JSON), `<delay>/s/v1/chat/completions` and `<delay>/slow/v1/chat/completions` (SSE), for the delay
prefixes /d0 and /d50. The harness serves it exactly as `gateway serve` serves the gateway (uvicorn, uvloop, httptools,
no access log, the same garbage-collector settings):

    BENCH_UPSTREAM=http://127.0.0.1:PORT uvicorn bench.floor:create_app --factory ...
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.gc_tuning import tune_garbage_collector

POOL_LIMIT = 4096  # as gateway/upstream.py
KEEPALIVE_S = 60
HEADERS = (("content-type", "application/json"),)
DELAY_PREFIXES = ("/d0", "/d50")  # the mock's (bench/servers.py: MOCK_DELAYS)


def session_for(upstream: str) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=POOL_LIMIT, keepalive_timeout=KEEPALIVE_S, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        upstream,
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )


async def json_passthrough(request: Request) -> Response:
    session: aiohttp.ClientSession = request.app.state.session
    body = await request.body()
    async with session.post(request.url.path, data=body, headers=HEADERS) as upstream:
        data = await upstream.read()
        return Response(data, status_code=upstream.status, media_type="application/json")


async def sse_passthrough(request: Request) -> Response:
    session: aiohttp.ClientSession = request.app.state.session
    body = await request.body()
    upstream = await session.post(request.url.path, data=body, headers=HEADERS)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        finally:
            upstream.release()

    return StreamingResponse(chunks(), status_code=upstream.status, media_type="text/event-stream")


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app() -> Starlette:
    upstream = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:18080")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.session = session_for(upstream)
        try:
            yield
        finally:
            await app.state.session.close()

    routes = [Route("/healthz", healthz)]
    for prefix in DELAY_PREFIXES:
        routes.append(Route(f"{prefix}/v1/chat/completions", json_passthrough, methods=["POST"]))
        routes.append(Route(f"{prefix}/s/v1/chat/completions", sse_passthrough, methods=["POST"]))
        routes.append(Route(f"{prefix}/slow/v1/chat/completions", sse_passthrough, methods=["POST"]))
    app = Starlette(routes=routes, lifespan=lifespan)
    tune_garbage_collector()  # the collector settings `gateway serve` runs with: no advantage from them either way
    return app
