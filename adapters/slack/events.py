"""``POST /slack/events``: the HTTP edge between Slack and the bolt app.

Two translators in the manner of ``slack_bolt.adapter.aiohttp``, with the signature checked
*before* anything is parsed: ``X-Slack-Signature`` must be ``v0=HMAC-SHA256(signing secret,
"v0:{X-Slack-Request-Timestamp}:{raw body}")`` compared in constant time, with the timestamp
inside five minutes of now (https://api.slack.com/authentication/verifying-requests-from-slack).
Anything else is answered 401 and touches nothing. Bolt checks the signature once more.
A signed body that is not the shape Slack documents is answered 400 before bolt routes it
(``adapters.slack.inbound``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.internals import build_normalized_headers, extract_content_type, parse_body
from slack_sdk.signature import Clock, SignatureVerifier

from adapters.slack.inbound import check_payload
from bot.errors import NotAuthorized, RequestError

log = logging.getLogger(__name__)

PATH = "/slack/events"


def _refuse(message: str) -> web.Response:
    log.warning("refused a signed Slack request: %s", message)
    return web.Response(status=400, text=message)


class SlackEvents:
    """The aiohttp handler for Slack's interactivity (and Events API) requests."""

    def __init__(self, app: AsyncApp, signing_secret: str, clock: Clock | None = None) -> None:
        self.app = app
        self.verifier = SignatureVerifier(signing_secret, clock or Clock())

    def check_signature(self, body: bytes, timestamp: str | None, signature: str | None) -> None:
        """Return only for a correctly signed, fresh request. Raises ``NotAuthorized`` for a
        missing, malformed, wrong or stale signature, and for a body that is not UTF-8 (Slack's
        bodies are; slack_sdk decodes the body to check it and crashed on other bytes)."""
        if not timestamp or not signature or not timestamp.isdigit():
            raise NotAuthorized("the Slack request has no valid signature headers")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise NotAuthorized("the Slack request's body is not UTF-8") from None
        if not self.verifier.is_valid(text, timestamp, signature):
            raise NotAuthorized("the Slack request's signature is wrong or stale")

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            self.check_signature(
                body,
                request.headers.get("X-Slack-Request-Timestamp"),
                request.headers.get("X-Slack-Signature"),
            )
        except NotAuthorized:
            log.info("rejected a Slack request with a missing, bad or stale signature")
            return web.Response(status=401, text="invalid Slack signature")
        text = body.decode("utf-8")  # verified: UTF-8
        headers: dict[str, str | Sequence[str]] = {
            k.lower(): request.headers.getall(k) for k in request.headers
        }
        try:
            # parsed as bolt parses it, so the shape checked is the one bolt routes on
            check_payload(parse_body(text, extract_content_type(build_normalized_headers(headers))))
        except ValueError:
            return _refuse("the Slack payload is not JSON")
        except RequestError as exc:
            return _refuse(exc.message)
        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=headers)
        return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PATH, self.handle)]
