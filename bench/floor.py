"""The floor: the least a Python gateway can do, against which the gateway's own overhead is judged.

A Starlette app that reads the body, forwards it to the mock upstream with one shared
`gateway.h1_client.H1Client` (the client the gateway uses for providers reached directly, configured as
gateway/upstream.py does) and returns the answer: JSON whole, SSE chunk by chunk as each arrives. No auth, no
parsing, no policies. It mirrors the mock's paths (bench/mock/), forwarding each to the same path upstream:
`<delay>/v1/chat/completions` (JSON), `<delay>/s/v1/chat/completions` and `<delay>/slow/v1/chat/completions`
(SSE), for the delay prefixes /d0 and /d50. The harness serves it exactly as `gateway serve` serves the gateway
(uvicorn, uvloop, httptools, no access log, the same garbage-collector settings):

    BENCH_UPSTREAM=http://127.0.0.1:PORT uvicorn bench.floor:create_app --factory ...
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.gc_tuning import tune_garbage_collector
from gateway.h1_client import H1Client, H1Response
from gateway.upstream import KEEPALIVE_S, POOL_LIMIT

HEADERS = {"content-type": "application/json"}
CONNECT_S = 5.0
DELAY_PREFIXES = ("/d0", "/d50")  # the mock's (bench/servers.py: MOCK_DELAYS)


async def forward(request: Request) -> H1Response:
    client: H1Client = request.app.state.client
    body = await request.body()
    upstream, _ = await client.request(
        "POST", request.app.state.upstream + request.url.path, HEADERS, body, None, CONNECT_S
    )
    return upstream


async def json_passthrough(request: Request) -> Response:
    upstream = await forward(request)
    try:
        pieces = []
        while piece := await upstream.read_piece():
            pieces.append(piece)
    finally:
        upstream.close()
    return Response(b"".join(pieces), status_code=upstream.status, media_type="application/json")


async def sse_passthrough(request: Request) -> Response:
    upstream = await forward(request)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await upstream.read_piece():
                yield chunk
        finally:
            upstream.close()

    return StreamingResponse(chunks(), status_code=upstream.status, media_type="text/event-stream")


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app() -> Starlette:
    upstream = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:18080")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.client = H1Client(POOL_LIMIT, KEEPALIVE_S)
        app.state.upstream = upstream
        try:
            yield
        finally:
            await app.state.client.close()

    routes = [Route("/healthz", healthz)]
    for prefix in DELAY_PREFIXES:
        routes.append(Route(f"{prefix}/v1/chat/completions", json_passthrough, methods=["POST"]))
        routes.append(Route(f"{prefix}/s/v1/chat/completions", sse_passthrough, methods=["POST"]))
        routes.append(Route(f"{prefix}/slow/v1/chat/completions", sse_passthrough, methods=["POST"]))
    app = Starlette(routes=routes, lifespan=lifespan)
    tune_garbage_collector()  # the collector settings `gateway serve` runs with: no advantage from them either way
    return app
