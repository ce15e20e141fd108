"""Builds the aiohttp application of the agent API. Adapters add their own routes to it at
the composition root (``adapters.main``)."""

from __future__ import annotations

import json
import logging
import time

from aiohttp import web

from bot.api import evidence, requests
from bot.api.context import APP_CHECKPOINTS, APP_GATE, APP_SETTINGS
from bot.api.openapi import document
from bot.api.problems import Handler, error_response, problem
from bot.checkpoints import Checkpointer
from bot.errors import SignoffError, StoreError
from bot.service import Gate
from bot.settings import Settings

log = logging.getLogger(__name__)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request (``signoff_http_request_seconds``) and answer ``SignoffError`` and
    aiohttp HTTP errors as problem+json (``bot.api.problems``). One middleware, not two: it
    runs on every call of the hot path."""
    start = time.perf_counter()
    try:
        return await handler(request)
    except (SignoffError, web.HTTPException) as exc:
        response = error_response(request, exc)
        if response is None:
            raise
        return response
    except ConnectionResetError:
        # the client hung up before its request was read (a load generator stopping, an
        # agent timing out): nobody is left to answer, and it is no server error to log
        log.debug("%s %s: the client closed the connection", request.method, request.path)
        return problem(400, "bad-request", "the connection closed before the request was read")
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        request.app[APP_GATE].metrics.observe_http(
            name, request.method, time.perf_counter() - start
        )


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    try:
        await request.app[APP_GATE].store.ping()
    except StoreError as exc:
        log.warning("readyz: %s", exc.diagnostics())  # the details stay in the server's log
        return problem(503, "store-unavailable", "the store is unreachable")
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    m = request.app[APP_GATE].metrics
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})


APP_OPENAPI = web.AppKey("openapi", bytes)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[APP_OPENAPI], content_type="application/json")


def create_api(gate: Gate, settings: Settings, checkpoints: Checkpointer) -> web.Application:
    """The agent API application (SPEC §6)."""
    app = web.Application(
        middlewares=[api_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[APP_GATE] = gate
    app[APP_SETTINGS] = settings
    app[APP_CHECKPOINTS] = checkpoints
    app[APP_OPENAPI] = json.dumps(
        document(http_callbacks=settings.callbacks.allow_private_networks)
    ).encode()
    app.add_routes(requests.routes())
    app.add_routes(evidence.routes())
    app.add_routes(
        [
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics),
            web.get("/openapi.json", openapi),
        ]
    )
    return app
