"""The OpenAPI 3.1 document of the agent API, served at ``/openapi.json``: ``document``
describes exactly what the server configured by ``settings`` accepts (``DOCUMENT`` is the
default configuration's)."""

from __future__ import annotations

import copy
from typing import Any

from bot import __version__
from bot.api.requests import MAX_IDEMPOTENCY_KEY
from bot.api.schema import (
    DIGEST_PATTERN,
    MAX_DEPTH,
    MAX_JUSTIFICATION,
    MAX_NUMBER,
    MAX_URL,
    TOOL_PATTERN,
    URL_PATTERN,
)

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


def _count(name: str, minimum: int, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": minimum},
    }


_VALUE = {"$ref": "#/components/schemas/JsonValue"}


def _object(description: str, *, nullable: bool = False) -> dict[str, Any]:
    return {
        "type": ["object", "null"] if nullable else "object",
        "additionalProperties": _VALUE,
        "description": f"{description}; nested at most {MAX_DEPTH} levels, numbers within "
        f"±{MAX_NUMBER} (I-JSON)",
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
            "JsonValue": {
                "description": "any JSON value whose numbers lie within ±(2^53 - 1)",
                "anyOf": [
                    {"type": ["string", "boolean", "null"]},
                    {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER},
                    {"type": "array", "items": _VALUE},
                    {"type": "object", "additionalProperties": _VALUE},
                ],
            },
            "ToolCall": {
                "type": "object",
                "additionalProperties": False,
                "required": ["tool", "arguments"],
                "properties": {
                    "tool": {"type": "string", "pattern": TOOL_PATTERN.pattern},
                    "arguments": _object("the tool call's arguments"),
                    "justification": {"type": ["string", "null"], "maxLength": MAX_JUSTIFICATION},
                    "context": {
                        **_object("what led to the call (prompt, session, user...)", nullable=True),
                        "properties": {
                            "requested_by": {
                                "type": "string",
                                "description": "who asked for the call: a person key, "
                                "e-mail or platform id; that person can never approve it",
                            }
                        },
                    },
                    "artifact_digest": {
                        "type": ["string", "null"],
                        "pattern": DIGEST_PATTERN.pattern,
                        "examples": [
                            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                        ],
                    },
                    "callback_url": {
                        "type": ["string", "null"],
                        "pattern": URL_PATTERN.pattern,
                        "maxLength": MAX_URL,
                        "description": "absolute http(s) URL the final state is POSTed to",
                    },
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
                            "artifact_digest": {
                                "type": ["string", "null"],
                                "description": "the digest registered for the agent",
                            },
                            "claimed_artifact_digest": {
                                "type": ["string", "null"],
                                "description": "a different digest the request claimed",
                            },
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
                    "grant": {"type": "string", "minLength": 1},
                    "outcome": {"enum": ["started", "succeeded", "failed"]},
                    "detail": _object("free-form outcome detail, attested", nullable=True),
                    "arguments": _object(
                        "the arguments about to be used; must match the grant", nullable=True
                    ),
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
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {
                            "type": "string",
                            "minLength": 1,
                            "maxLength": MAX_IDEMPOTENCY_KEY,
                        },
                    }
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
                "RFC 6962 inclusion proof of entry `index` in the tree of the first `size` "
                "entries; 404 when the log is smaller than `size` or `index` >= `size`",
                {"200": _json("Proof", "proof")},
                400,
                404,
                security=[],
                parameters=[
                    _count("index", 0, "index of the entry (0-based)"),
                    _count("size", 1, "size of the tree the proof is against"),
                ],
            )
        },
        "/v1/log/proof/consistency": {
            "get": _op(
                "RFC 6962 consistency proof between the trees of sizes `from` and `to`; 404 "
                "when the log is smaller than `to` or `from` > `to`",
                {"200": _json("Proof", "proof")},
                400,
                404,
                security=[],
                parameters=[
                    _count("from", 1, "size of the older tree"),
                    _count("to", 1, "size of the newer tree"),
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


HTTPS_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]://[^/?#]"


def document(*, http_callbacks: bool) -> dict[str, Any]:
    """The document for a server whose ``callbacks.allow_private_networks`` is
    ``http_callbacks``: without it, a ``callback_url`` must be https (and a literal host
    public, which no JSON Schema can say: a 400 ``private-address`` names it)."""
    doc = copy.deepcopy(DOCUMENT)
    url = doc["components"]["schemas"]["ToolCall"]["properties"]["callback_url"]
    if not http_callbacks:
        url["pattern"] = HTTPS_URL_PATTERN
        url["description"] = (
            "absolute https URL of a public host the final state is POSTed to "
            "(http and private addresses only with callbacks.allow_private_networks)"
        )
    return doc
