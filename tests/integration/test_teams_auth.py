"""Inbound authentication of ``/api/messages``: with an app id configured, an activity
without a valid Bot Framework channel token is refused with 401 and changes nothing (tokens
the customer's own Entra tenant issues included: the security review approved with one and
stole the connector token with one); the development flag switches checking off, loudly, and
only on loopback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_aiohttp import AiohttpClient

from tests.fakes.teams_env import ALICE, APP_ID, OTHER_TENANT, TENANT, TeamsEnv, teams_env
from tests.support import write_home

SIGNOFF = str(Path(sys.executable).with_name("signoff"))

ARGS = {"amount": 25000, "currency": "USD", "to": "acct-123"}


@pytest_asyncio.fixture
async def env(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[TeamsEnv]:
    async with teams_env(tmp_path, aiohttp_client) as e:
        yield e


async def assert_nothing_changed(env: TeamsEnv, request_id: str) -> None:
    await env.runtime.gate.drain()
    assert (await env.poll(request_id, wait=0))["status"] == "pending"
    assert await env.runtime.store.votes(request_id) == []
    assert env.fake.calls_of("update") == [] and env.fake.calls_of("reply") == []


def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


BAD_TOKENS: dict[str, Callable[[TeamsEnv], str | None]] = {
    "missing": lambda env: None,
    "not-a-jwt": lambda env: "not.a.jwt",
    "signed-by-another-key": lambda env: env.fake.inbound_token(key=other_key()),
    "for-another-app": lambda env: env.fake.inbound_token(audience="someone-else"),
    "expired": lambda env: env.fake.inbound_token(lifetime=-600),
    "untrusted-issuer": lambda env: env.fake.inbound_token(issuer="https://evil.example"),
    "another-tenant": lambda env: env.fake.inbound_token(
        issuer=f"https://login.microsoftonline.com/{OTHER_TENANT}/v2.0", tid=OTHER_TENANT
    ),
    "other-service-url": lambda env: env.fake.inbound_token(
        service_url="https://smba.evil.example/"
    ),
    # Entra tokens the customer's tenant issues for our app id: valid signature, right
    # audience, no serviceurl (SPEC §8: any issuer but the Bot Framework is a 401).
    "tenant-v1": lambda env: env.fake.inbound_token(
        issuer=f"https://sts.windows.net/{TENANT}/", tid=TENANT, omit=("serviceurl",)
    ),
    "tenant-v2": lambda env: env.fake.inbound_token(
        issuer=f"https://login.microsoftonline.com/{TENANT}/v2.0", tid=TENANT
    ),
    "tenant-v1-with-serviceurl": lambda env: env.fake.inbound_token(
        issuer=f"https://sts.windows.net/{TENANT}/", tid=TENANT
    ),
    "bot-framework-without-serviceurl": lambda env: env.fake.inbound_token(omit=("serviceurl",)),
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_activity_without_valid_authentication_is_refused(env: TeamsEnv, kind: str) -> None:
    body = await env.submit("payments.transfer", ARGS)
    await env.card_message(body["id"])
    token = BAD_TOKENS[kind](env)
    status, answer = await env.send(env.activity("approve", body["id"], ALICE), token=token)
    assert status == 401, answer
    await assert_nothing_changed(env, body["id"])


async def test_malformed_authorization_headers_are_refused(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", ARGS)
    await env.card_message(body["id"])
    good = env.fake.inbound_token()
    for header in (f"Basic {good}", "Bearer", f"Bearer {good} extra", f"{good}"):
        resp = await env.client.post(
            "/api/messages",
            json=env.activity("approve", body["id"], ALICE),
            headers={"Authorization": header},
        )
        assert resp.status == 401, header
    await assert_nothing_changed(env, body["id"])


async def test_tenant_token_cannot_approve_as_an_approver(env: TeamsEnv) -> None:
    """The review's attack: a token the customer's Entra tenant issued (iss
    ``sts.windows.net/<tenant>/``, no ``serviceurl``) and ``from.aadObjectId`` = Alice."""
    body = await env.submit("payments.transfer", ARGS)
    await env.card_message(body["id"])
    token = env.fake.inbound_token(
        issuer=f"https://sts.windows.net/{TENANT}/", tid=TENANT, omit=("serviceurl",)
    )
    status, _ = await env.send(env.activity("approve", body["id"], ALICE), token=token)
    assert status == 401
    await assert_nothing_changed(env, body["id"])
    # The same click with a channel token is what approves.
    assert (await env.click("approve", body["id"], ALICE))["statusCode"] == 200
    assert (await env.poll(body["id"]))["status"] == "approved"


@pytest_asyncio.fixture
async def attacker() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A listener on loopback that records every request's headers (a stolen bearer)."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"id": "stolen"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/")), seen
    finally:
        await server.close()


@pytest.mark.parametrize("kind", ["tenant-token", "channel-token-for-the-real-service"])
async def test_refresh_cannot_point_cards_at_another_service_url(
    env: TeamsEnv, attacker: tuple[str, list[dict[str, str]]], kind: str
) -> None:
    """The review's second attack: a refresh activity whose ``serviceUrl`` names the
    attacker's listener; the next card (with the bot's connector bearer) went there."""
    evil_url, seen = attacker
    activity = env.activity("refresh", "whatever", ALICE)
    activity["serviceUrl"] = evil_url
    token = (
        env.fake.inbound_token(
            issuer=f"https://sts.windows.net/{TENANT}/", tid=TENANT, omit=("serviceurl",)
        )
        if kind == "tenant-token"
        else env.fake.inbound_token()  # serviceurl = the real service, not the activity's
    )
    status, _ = await env.send(activity, token=token)
    assert status == 401
    assert env.channel.references == {}
    body = await env.submit("payments.transfer", ARGS)
    (post,) = await env.posts(body["id"])
    assert post.extra["service_url"] == env.fake.service_url
    await env.runtime.gate.drain()
    assert seen == []


async def test_non_json_is_refused_after_authentication(env: TeamsEnv) -> None:
    resp = await env.client.post(
        "/api/messages",
        data=b"hello",
        headers={
            "Authorization": f"Bearer {env.fake.inbound_token()}",
            "Content-Type": "text/plain",
        },
    )
    assert resp.status == 415


async def test_insecure_development_flag_turns_checking_off_loudly(
    tmp_path: Path, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.teams")
    async with teams_env(tmp_path, aiohttp_client, insecure=True) as env:
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any("insecure_dev_disable_auth" in r.getMessage() for r in warnings)
        body = await env.submit("payments.transfer", ARGS)
        await env.card_message(body["id"])
        status, answer = await env.send(env.activity("approve", body["id"], ALICE), token=None)
        assert status == 200 and answer["statusCode"] == 200
        assert (await env.poll(body["id"]))["status"] == "approved"
        # Unauthenticated activities never redirect where cards go.
        assert env.channel.references == {}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])  # noqa: S104
def test_insecure_development_flag_refuses_to_start_off_loopback(tmp_path: Path, host: str) -> None:
    """A real ``signoff serve``: one clear line, non-zero exit, nothing listening."""
    config = write_home(
        tmp_path,
        extra=f"""\
teams:
  app_id: "{APP_ID}"
  insecure_dev_disable_auth: true
""",
    )
    config.write_text(config.read_text().replace("host: 127.0.0.1", f'host: "{host}"'))
    out = subprocess.run(
        [SIGNOFF, "--config", str(config), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TEAMS_"))},
    )
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert "insecure_dev_disable_auth" in lines[-1] and "loopback" in lines[-1], out.stderr
    assert "Traceback" not in out.stderr
