"""Evidence endpoints (SPEC §6): keys, checkpoint, proofs, a request's attestations."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from bot.api.context import APP_CHECKPOINTS, APP_GATE, require_agent
from bot.errors import NotFound, RequestError


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _int_param(request: web.Request, name: str, minimum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        raise RequestError(f"query parameter {name!r} is required")
    try:
        value = int(raw)
    except ValueError as exc:
        raise RequestError(f"{name} must be a whole number") from exc
    if value < minimum:
        raise RequestError(f"{name} must be at least {minimum}")
    return value


async def keys(request: web.Request) -> web.Response:
    return web.json_response(request.app[APP_GATE].keys.jwks())


async def checkpoint(request: web.Request) -> web.Response:
    cp = await request.app[APP_CHECKPOINTS].current()
    return web.Response(text=cp.note, content_type="text/plain")


async def inclusion(request: web.Request) -> web.Response:
    index = _int_param(request, "index", 0)
    size = _int_param(request, "size", 1)
    store = request.app[APP_GATE].store
    current = await store.log_size()
    if size > current:
        raise NotFound(f"no tree of size {size}: the log has {current} entries")
    if index >= size:
        raise NotFound(f"no entry {index} in the tree of size {size}")
    proof = await store.inclusion_proof(index, size)
    return web.json_response(
        {"index": index, "tree_size": size, "hashes": [_b64(h) for h in proof]}
    )


async def consistency(request: web.Request) -> web.Response:
    old = _int_param(request, "from", 1)
    new = _int_param(request, "to", 1)
    store = request.app[APP_GATE].store
    current = await store.log_size()
    if new > current:
        raise NotFound(f"no tree of size {new}: the log has {current} entries")
    if old > new:
        raise NotFound(f"no consistency proof from a tree of size {old} to a smaller one")
    proof = await store.consistency_proof(old, new)
    return web.json_response({"from": old, "to": new, "hashes": [_b64(h) for h in proof]})


async def attestations(request: web.Request) -> web.Response:
    agent = await require_agent(request)
    gate = request.app[APP_GATE]
    r = await gate.get(request.match_info["id"], agent)
    return web.json_response(await attestation_bundle(request.app, r.id))


async def attestation_bundle(app: web.Application, request_id: str) -> dict[str, Any]:
    """This request's envelopes, oldest first, each with an inclusion proof against the
    enclosed checkpoint."""
    gate = app[APP_GATE]
    cp = await app[APP_CHECKPOINTS].current()
    entries = []
    for entry in await gate.log_entries_for(request_id):
        if entry.index >= cp.size:
            continue
        proof = await gate.inclusion_proof(entry.index, cp.size)
        entries.append(
            {
                "index": entry.index,
                "event": entry.event.value,
                "envelope": json.loads(entry.envelope),
                "inclusion_proof": {"tree_size": cp.size, "hashes": [_b64(h) for h in proof]},
                "checkpoint": cp.note,
            }
        )
    return {"request_id": request_id, "entries": entries}


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/keys", keys),
        web.get("/v1/log/checkpoint", checkpoint),
        web.get("/v1/log/proof/inclusion", inclusion),
        web.get("/v1/log/proof/consistency", consistency),
        web.get("/v1/requests/{id}/attestations", attestations),
    ]
