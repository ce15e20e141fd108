"""Inbound authentication of ``/api/messages``: with an app id configured, an activity
without a valid Bot Framework token is refused with 401 and changes nothing; the development
flag switches checking off, loudly."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.teams_env import ALICE, OTHER_TENANT, TENANT, TeamsEnv, teams_env

ARGS = {"amount": 25000, "currency": "USD", "to": "acct-123"}


@pytest_asyncio.fixture
async def env(tmp_path: Path, aiohttp_client: Any) -> AsyncIterator[TeamsEnv]:
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


async def test_valid_entra_token_of_our_tenant_is_accepted(env: TeamsEnv) -> None:
    body = await env.submit("payments.transfer", ARGS)
    await env.card_message(body["id"])
    token = env.fake.inbound_token(
        issuer=f"https://login.microsoftonline.com/{TENANT}/v2.0", tid=TENANT
    )
    status, answer = await env.send(env.activity("approve", body["id"], ALICE), token=token)
    assert status == 200 and answer["statusCode"] == 200
    assert (await env.poll(body["id"]))["status"] == "approved"


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
    tmp_path: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
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
