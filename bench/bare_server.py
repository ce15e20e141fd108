"""The floor ``workers_cpu.py`` measures signoff against: a bare aiohttp server on the
given port whose one handler reads a JSON body and answers JSON (201), and nothing else:
no authentication, policy, signatures or store. ``python bench/bare_server.py PORT``;
stops on SIGTERM."""

from __future__ import annotations

import sys

import orjson
from aiohttp import web


async def answer(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    reply = {"id": "0", "status": "approved", "tool": body.get("tool"), "grant": None}
    return web.Response(body=orjson.dumps(reply), status=201, content_type="application/json")


async def ready(_: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


def main() -> None:
    app = web.Application()
    app.router.add_post("/v1/requests", answer)
    app.router.add_get("/readyz", ready)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
