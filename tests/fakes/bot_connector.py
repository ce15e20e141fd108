"""A fake Bot Framework: connector service, Entra token endpoint and signing keys, on an
ephemeral port, for the real Microsoft 365 Agents SDK code in signoff's Teams adapter.

- ``POST /v3/conversations/{id}/activities`` (new message), ``POST …/activities/{activityId}``
  (reply in the thread) and ``PUT …/activities/{activityId}`` (update in place) answer like
  the Bot Connector (``{"id": …}``), require a bearer token this fake issued, and record
  every call; ``messages`` holds each message's current content and edit count.
- ``POST /token`` is the OAuth 2.0 client-credentials grant (checks the app id and password).
- ``GET /keys`` is the JWKS of a local RSA key; ``inbound_token`` signs the tokens Teams would
  send to ``/api/messages`` (issuer ``https://api.botframework.com``, ``serviceurl`` claim).
- ``fail(kind, status, times, retry_after)`` injects 429/412/5xx answers per kind
  (``post``, ``reply``, ``update``, ``token``); ``wait_for`` waits for a condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"


@dataclass
class Call:
    """One connector call as received."""

    kind: str  # post | reply | update
    conversation_id: str
    activity_id: str | None
    body: dict[str, Any]
    status: int
    authorization: str | None


@dataclass
class Message:
    """A message in a conversation, as it currently reads."""

    id: str
    conversation_id: str
    body: dict[str, Any]
    reply_to: str | None = None
    edits: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def card(self) -> dict[str, Any] | None:
        for attachment in self.body.get("attachments") or []:
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
                content = attachment.get("content")
                return content if isinstance(content, dict) else None
        return None


@dataclass
class Fault:
    status: int
    retry_after: str | None = None


class FakeBotFramework:
    """The fake services and what they saw."""

    def __init__(self, *, app_id: str, app_password: str, kid: str = "test-key-1") -> None:
        self.app_id = app_id
        self.app_password = app_password
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self.token_requests: list[dict[str, str]] = []
        self.issued: set[str] = set()
        self.require_auth = True
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeBotFramework:
        app = web.Application()
        app.router.add_get("/keys", self._keys)
        app.router.add_post("/token", self._token)
        app.router.add_post("/v3/conversations/{cid}/activities", self._post)
        app.router.add_post("/v3/conversations/{cid}/activities/{aid}", self._reply)
        app.router.add_put("/v3/conversations/{cid}/activities/{aid}", self._update)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def service_url(self) -> str:
        return self.url + "/"

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    @property
    def jwks_url(self) -> str:
        return self.url + "/keys"

    # ------------------------------------------------------------------ test controls

    def fail(self, kind: str, status: int, times: int = 1, retry_after: str | None = None) -> None:
        for _ in range(times):
            self._faults[kind].append(Fault(status, retry_after))

    def inbound_token(
        self,
        *,
        audience: str | None = None,
        service_url: str | None = None,
        issuer: str = BOT_FRAMEWORK_ISSUER,
        lifetime: int = 3600,
        key: rsa.RSAPrivateKey | None = None,
        omit: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        """A token as the Bot Framework signs it for activities sent to the bot (``omit``:
        claims to leave out, e.g. ``("serviceurl",)`` as in an Entra token of a tenant)."""
        now = int(time.time())
        payload = {
            "iss": issuer,
            "aud": audience or self.app_id,
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
            "serviceurl": service_url or self.service_url,
            **claims,
        }
        for name in omit:
            payload.pop(name, None)
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": self.kid})

    def posts(self, conversation_id: str | None = None) -> list[Message]:
        """Top-level messages (not thread replies), oldest first."""
        return [
            m
            for m in self.messages.values()
            if m.reply_to is None and conversation_id in (None, m.conversation_id)
        ]

    def replies(self, to: str) -> list[Message]:
        return [m for m in self.messages.values() if m.reply_to == to]

    def calls_of(self, kind: str) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    async def wait_for(self, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``condition()`` is truthy (re-checked on every call received)."""
        end = asyncio.get_running_loop().time() + timeout
        while True:
            result = condition()
            if result:
                return result
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError("the fake Bot Framework never saw the expected calls")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.25))

    # ------------------------------------------------------------------ handlers

    async def _keys(self, request: web.Request) -> web.Response:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return web.json_response({"keys": [jwk]})

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
        fault = self._fault("token")
        if fault is not None:
            return fault
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.app_id
            or form.get("client_secret") != self.app_password
        ):
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"fake-connector-token-{next(self._ids)}"
        self.issued.add(token)
        return web.json_response(
            {"token_type": "Bearer", "expires_in": 3600, "access_token": token}
        )

    def _fault(self, kind: str) -> web.Response | None:
        queue = self._faults.get(kind)
        if not queue:
            return None
        fault = queue.popleft()
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        return web.json_response(
            {"error": {"code": "Injected", "message": f"injected {fault.status}"}},
            status=fault.status,
            headers=headers,
        )

    def _authorised(self, request: web.Request) -> bool:
        if not self.require_auth:
            return True
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.issued

    async def _handle(self, request: web.Request, kind: str) -> web.Response:
        cid = request.match_info["cid"]
        aid = request.match_info.get("aid")
        body = await request.json()
        auth = request.headers.get("Authorization")
        answer: web.Response
        if not self._authorised(request):
            answer = web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        elif (fault := self._fault(kind)) is not None:
            answer = fault
        elif kind == "update" and (aid not in self.messages):
            answer = web.json_response({"error": {"code": "NotFound"}}, status=404)
        else:
            answer = self._apply(kind, cid, aid, body)
        self.calls.append(Call(kind, cid, aid, body, answer.status, auth))
        self._changed.set()
        return answer

    def _apply(self, kind: str, cid: str, aid: str | None, body: dict[str, Any]) -> web.Response:
        if kind == "update":
            assert aid is not None
            message = self.messages[aid]
            message.history.append(message.body)
            message.body = body
            message.edits += 1
            return web.json_response({"id": aid})
        new_id = f"{1700000000000 + next(self._ids)}"
        self.messages[new_id] = Message(new_id, cid, body, reply_to=aid)
        return web.json_response({"id": new_id}, status=201)

    async def _post(self, request: web.Request) -> web.Response:
        return await self._handle(request, "post")

    async def _reply(self, request: web.Request) -> web.Response:
        return await self._handle(request, "reply")

    async def _update(self, request: web.Request) -> web.Response:
        return await self._handle(request, "update")
