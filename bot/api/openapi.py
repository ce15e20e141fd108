"""The OpenAPI 3.1 document of the agent API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from bot import __version__
from bot.api.schema import MAX_DEPTH, MAX_JUSTIFICATION, TOOL_PATTERN

_PROBLEM = {"$ref": "#/components/responses/Problem"}


def _op(summary: str, ok: dict[str, Any], *errors: int, **extra: Any) -> dict[str, Any]:
    responses: dict[str, Any] = dict(ok)
    for code in errors:
        responses[str(code)] = _PROBLEM
    return {"summary": summary, "responses": responses, **extra}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "signoff agent API",
        "version": __version__,
        "description": "Ask a human before an AI agent runs a high-risk tool call.",
    },
    "components": {
        "securitySchemes": {"agentToken": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "Problem": {
                "description": "RFC 9457 problem details",
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
        },
        "schemas": {
            "Problem": {
                "type": "object",
                "required": ["type", "title", "status", "detail"],
                "properties": {
                    "type": {"type": "string", "format": "uri"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "string"}},
                },
            },
            "ToolCall": {
                "type": "object",
                "additionalProperties": False,
                "required": ["tool", "arguments"],
                "properties": {
                    "tool": {"type": "string", "pattern": TOOL_PATTERN.pattern},
                    "arguments": {
                        "type": "object",
                        "description": f"any JSON object, nested at most {MAX_DEPTH} levels",
                    },
                    "justification": {"type": "string", "maxLength": MAX_JUSTIFICATION},
                    "context": {
                        "type": "object",
                        "properties": {
                            "requested_by": {
                                "type": "string",
                                "description": "who asked for the call: a person key, "
                                "e-mail or platform id; that person can never approve it",
                            }
                        },
                    },
                    "artifact_digest": {"type": "string", "examples": ["sha256:ab12…"]},
                    "callback_url": {"type": "string", "format": "uri"},
                },
            },
            "Request": {
                "type": "object",
                "required": ["id", "status", "tier", "tool", "arguments_sha256", "call_sha256"],
                "properties": {
                    "id": {"type": "string"},
                    "status": {"enum": ["pending", "approved", "denied", "expired", "cancelled"]},
                    "tier": {"enum": ["auto", "notify", "confirm", "block"]},
                    "tool": {"type": "string"},
                    "arguments_sha256": {"type": "string"},
                    "call_sha256": {"type": "string"},
                    "agent": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "artifact_digest": {"type": ["string", "null"]},
                        },
                    },
                    "policy": {
                        "type": "object",
                        "properties": {
                            "digest": {"type": "string"},
                            "version": {"type": ["string", "null"]},
                            "rule": {"type": ["string", "null"]},
                        },
                    },
                    "approvals": {
                        "type": "object",
                        "properties": {
                            "required": {"type": "integer"},
                            "received": {"type": "integer"},
                        },
                    },
                    "created_at": {"type": "string", "format": "date-time"},
                    "deadline": {"type": ["string", "null"], "format": "date-time"},
                    "decided_at": {"type": ["string", "null"], "format": "date-time"},
                    "reason": {"type": ["string", "null"]},
                    "grant": {"type": ["string", "null"], "description": "EdDSA JWT"},
                    "grant_expires_at": {"type": ["string", "null"], "format": "date-time"},
                    "outcome": {"enum": ["started", "succeeded", "failed", None]},
                    "approved_arguments": {
                        "type": ["object", "null"],
                        "description": "set when an approver edited the arguments (rule "
                        "option editable): the grant binds these, so the agent must run them",
                    },
                    "approved_arguments_sha256": {
                        "type": ["string", "null"],
                        "description": "arguments_sha256 of the edited arguments",
                    },
                },
            },
            "RequestList": {
                "type": "object",
                "required": ["requests"],
                "properties": {
                    "requests": {
                        "type": "array",
                        "maxItems": 1,
                        "items": {"$ref": "#/components/schemas/Request"},
                    }
                },
            },
            "Execution": {
                "type": "object",
                "additionalProperties": False,
                "required": ["grant", "outcome"],
                "properties": {
                    "grant": {"type": "string"},
                    "outcome": {"enum": ["started", "succeeded", "failed"]},
                    "detail": {"type": "object"},
                    "arguments": {
                        "type": "object",
                        "description": "the arguments about to be used; must match the grant",
                    },
                },
            },
            "Proof": {
                "type": "object",
                "properties": {"hashes": {"type": "array", "items": {"type": "string"}}},
            },
        },
    },
    "security": [{"agentToken": []}],
    "paths": {
        "/v1/requests": {
            "get": _op(
                "Find the agent's own request by the Idempotency-Key it was submitted with",
                {"200": _json("RequestList", "zero or one of the agent's own requests")},
                400,
                401,
                403,
                503,
                parameters=[
                    {
                        "name": "idempotency_key",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
            ),
            "post": _op(
                "Submit a tool call for a decision",
                {"201": _json("Request", "created"), "200": _json("Request", "idempotent replay")},
                400,
                401,
                403,
                409,
                413,
                415,
                429,
                503,
                parameters=[
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}
                ],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ToolCall"}}
                    },
                },
            ),
        },
        "/v1/requests/{id}": {
            "get": _op(
                "Read a request; with wait=N hold up to N seconds until it is decided",
                {"200": _json("Request", "the request")},
                400,
                401,
                403,
                404,
                503,
                parameters=[
                    _ID,
                    {
                        "name": "wait",
                        "in": "query",
                        "schema": {"type": "number", "minimum": 0, "maximum": 60},
                    },
                ],
            )
        },
        "/v1/requests/{id}/cancel": {
            "post": _op(
                "Withdraw a pending request",
                {"200": _json("Request", "cancelled")},
                401,
                403,
                404,
                409,
                parameters=[_ID],
            )
        },
        "/v1/requests/{id}/execution": {
            "post": _op(
                "Report execution; the first `started` consumes the grant",
                {"200": _json("Request", "recorded")},
                400,
                401,
                403,
                404,
                409,
                413,
                415,
                parameters=[_ID],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Execution"}}
                    },
                },
            )
        },
        "/v1/requests/{id}/attestations": {
            "get": _op(
                "This request's attestations with inclusion proofs",
                {"200": {"description": "entries"}},
                401,
                403,
                404,
                parameters=[_ID],
            )
        },
        "/v1/keys": {
            "get": _op("Public keys (JWKS)", {"200": {"description": "JWKS"}}, security=[])
        },
        "/v1/log/checkpoint": {
            "get": _op(
                "Latest signed checkpoint (C2SP signed note)",
                {"200": {"description": "text/plain note"}},
                security=[],
            )
        },
        "/v1/log/proof/inclusion": {
            "get": _op(
                "RFC 6962 inclusion proof",
                {"200": _json("Proof", "proof")},
                400,
                security=[],
                parameters=[
                    {
                        "name": "index",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer"},
                    },
                    {
                        "name": "size",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer"},
                    },
                ],
            )
        },
        "/v1/log/proof/consistency": {
            "get": _op(
                "RFC 6962 consistency proof",
                {"200": _json("Proof", "proof")},
                400,
                security=[],
                parameters=[
                    {
                        "name": "from",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer"},
                    },
                    {"name": "to", "in": "query", "required": True, "schema": {"type": "integer"}},
                ],
            )
        },
        "/healthz": {"get": _op("Liveness", {"200": {"description": "ok"}}, security=[])},
        "/readyz": {
            "get": _op(
                "Readiness (store reachable)", {"200": {"description": "ok"}}, 503, security=[]
            )
        },
        "/metrics": {
            "get": _op("Prometheus metrics", {"200": {"description": "text"}}, security=[])
        },
    },
}
