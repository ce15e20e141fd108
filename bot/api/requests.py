"""Handlers of the agent API (SPEC §6): requests, long-poll, cancel, execution."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from bot.addresses import check_callback_url
from bot.api.context import APP_GATE, APP_SETTINGS, require_agent
from bot.api.schema import parse_execution, parse_submission
from bot.domain import Request, Status, Tier, rfc3339
from bot.errors import PayloadTooLarge, RequestError, UnsupportedMediaType
from bot.evidence.canonical import canonical, sha256_hex
from bot.jsontext import decode_json
from bot.service import Submission

MAX_IDEMPOTENCY_KEY = 255
JSON_TYPE = "application/json"


async def read_json(request: web.Request) -> Any:
    """Read a JSON body. Raises ``UnsupportedMediaType``, ``PayloadTooLarge``, ``RequestError``."""
    # the usual header as sent is the answer (aiohttp parses it only when it is not)
    if (
        request.headers.get("Content-Type") != JSON_TYPE
        and request.content_type != JSON_TYPE
        and not request.content_type.endswith("+json")
    ):
        raise UnsupportedMediaType("send the body as application/json")
    limit = request.app[APP_SETTINGS].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes") from exc
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    try:
        return decode_json(raw)
    except UnicodeDecodeError as exc:
        raise RequestError("request body is not UTF-8") from exc
    except RecursionError as exc:
        raise RequestError("request body is nested too deeply") from exc
    except ValueError as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from exc


def request_json(r: Request, approvals_received: int = 0) -> dict[str, Any]:
    """The public JSON form of a request (SPEC §6 answer)."""
    return {
        "id": r.id,
        "status": str(r.status),
        "tier": str(r.tier),
        "tool": r.call.tool,
        "arguments_sha256": r.arguments_sha256,
        "call_sha256": r.call_sha256,
        "agent": {
            "id": r.agent_id,
            "artifact_digest": r.artifact_digest,
            "claimed_artifact_digest": r.claimed_artifact_digest,
        },
        "policy": {"digest": r.policy.digest, "version": r.policy.version, "rule": r.policy.rule},
        "approvals": {
            "required": r.requirement.required if r.tier is Tier.CONFIRM else 0,
            "received": approvals_received,
        },
        "created_at": rfc3339(r.created_at),
        "deadline": rfc3339(r.deadline),
        "decided_at": rfc3339(r.decided_at),
        "reason": r.reason,
        "grant": r.grant,
        "grant_expires_at": rfc3339(r.grant_expires_at),
        "outcome": str(r.outcome) if r.outcome else None,
        # SPEC §7: when an approver edited the arguments, the grant binds these; run them.
        "approved_arguments": approved_arguments(r),
        "approved_arguments_sha256": r.current_sha256 if r.edit is not None else None,
    }


def approved_arguments(r: Request) -> dict[str, Any] | None:
    """The approver-edited arguments of an approved request (None when nobody edited)."""
    if r.edit is None or r.status is not Status.APPROVED:
        return None
    return dict(r.edit.arguments)


async def _public(request: web.Request, r: Request) -> dict[str, Any]:
    # only a confirm-tier request has approvals to count (``received`` reads its votes)
    received = await request.app[APP_GATE].received(r) if r.tier is Tier.CONFIRM else 0
    return request_json(r, received)


async def _render(request: web.Request, r: Request, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(await _public(request, r)), status=status, content_type=JSON_TYPE
    )


def _idempotency_key(value: str | None, where: str) -> str | None:
    if value is not None and not 1 <= len(value) <= MAX_IDEMPOTENCY_KEY:
        raise RequestError(f"{where} must be 1-{MAX_IDEMPOTENCY_KEY} characters")
    return value


async def find_requests(request: web.Request) -> web.Response:
    """``GET /v1/requests?idempotency_key=K``: the agent's own request submitted with that
    key, as a list of zero or one (so a restarted agent finds its pending request)."""
    agent = await require_agent(request)
    unknown = sorted(set(request.query) - {"idempotency_key"})
    if unknown:
        raise RequestError(f"unknown query parameter(s): {', '.join(unknown)}")
    key = _idempotency_key(request.query.get("idempotency_key"), "idempotency_key")
    if key is None:
        raise RequestError("give idempotency_key: the key the request was submitted with")
    found = await request.app[APP_GATE].find(agent, key)
    items = [await _public(request, found)] if found is not None else []
    return web.Response(body=orjson.dumps({"requests": items}), content_type=JSON_TYPE)


async def submit(request: web.Request) -> web.Response:
    agent = await require_agent(request)
    body = await read_json(request)
    call, artifact, callback = parse_submission(body)
    if callback is not None:
        allow = request.app[APP_SETTINGS].callbacks.allow_private_networks
        check_callback_url(callback, allow_private=allow)
    key = _idempotency_key(request.headers.get("Idempotency-Key"), "Idempotency-Key")
    sub = Submission(
        call=call,
        artifact_digest=artifact,
        callback_url=callback,
        idempotency_key=key,
        body_sha256=sha256_hex(canonical(body)) if key is not None else None,
    )
    stored, created = await request.app[APP_GATE].submit(agent, sub)
    response = await _render(request, stored, 201 if created else 200)
    response.headers["Location"] = f"/v1/requests/{stored.id}"
    return response


async def get_request(request: web.Request) -> web.Response:
    agent = await require_agent(request)
    gate = request.app[APP_GATE]
    request_id = request.match_info["id"]
    wait_raw = request.query.get("wait")
    if wait_raw is None:
        return await _render(request, await gate.get(request_id, agent))
    limit = request.app[APP_SETTINGS].server.max_wait_seconds
    try:
        wait = float(wait_raw)
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= limit or wait != wait:
        raise RequestError(f"wait must be a number of seconds from 0 to {limit}")
    return await _render(request, await gate.wait(request_id, agent, wait))


async def cancel(request: web.Request) -> web.Response:
    agent = await require_agent(request)
    done = await request.app[APP_GATE].cancel(request.match_info["id"], agent)
    return await _render(request, done)


async def execution(request: web.Request) -> web.Response:
    agent = await require_agent(request)
    body = await read_json(request)
    grant, outcome, detail, arguments = parse_execution(body)
    done = await request.app[APP_GATE].record_execution(
        request.match_info["id"], agent, grant, outcome, detail, arguments
    )
    return await _render(request, done)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/requests", submit),
        web.get("/v1/requests", find_requests),
        web.get("/v1/requests/{id}", get_request),
        web.post("/v1/requests/{id}/cancel", cancel),
        web.post("/v1/requests/{id}/execution", execution),
    ]
