"""``callback_url`` is https to a public address only (SPEC §6), checked at submit for literal
addresses and when the connection is made for names (after DNS).

The security review submitted ``http://127.0.0.1:9999/…``, ``169.254.169.254`` and ``[::1]``
and watched the server POST there with retries. Here each is a 400 over real HTTP that
creates nothing; a name whose DNS answer is private (DNS rebinding) is refused at connect
time, logged and counted, with no connection made.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from pytest_aiohttp import AiohttpClient

from adapters.callbacks import CallbackSender, PublicOnlyResolver
from adapters.main import build
from adapters.runtime import Runtime
from bot.addresses import PrivateAddress, check_public
from bot.domain import ToolCall
from bot.service import Submission
from bot.settings import load_settings
from tests.support import write_home

BAD_URLS = [
    "http://127.0.0.1:9999/hook",
    "https://127.0.0.1:9999/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:a9fe:a9fe]/hook",
    "https://[fd12:3456::1]/hook",
    "https://[fe80::1]/hook",
    "https://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "https://0.0.0.0/hook",
    "https://localhost/hook",
    "https://api.localhost/hook",
    "http://agent.example.com/hook",
]


@pytest.mark.parametrize("url", BAD_URLS)
async def test_private_or_plain_http_callback_is_a_400_that_creates_nothing(
    runtime: Runtime, aiohttp_client: AiohttpClient, url: str
) -> None:
    client = await aiohttp_client(runtime.app)
    _, token = await runtime.gate.register_agent("agent")
    resp = await client.post(
        "/v1/requests",
        json={"tool": "crm.read", "arguments": {"id": 1}, "callback_url": url},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert any(d.startswith("callback_url:") for d in problem["errors"]), problem
    assert await runtime.store.log_size() == 0
    assert await runtime.store.list_requests() == []


async def test_public_https_callback_is_accepted(
    runtime: Runtime, aiohttp_client: AiohttpClient
) -> None:
    client = await aiohttp_client(runtime.app)
    _, token = await runtime.gate.register_agent("agent")
    for url in ("https://agent.example.com/hook", "https://93.184.215.14/hook"):
        resp = await client.post(
            "/v1/requests",
            json={"tool": "crm.read", "arguments": {"id": 1}, "callback_url": url},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 201, await resp.text()


class Listener:
    """A TCP listener on loopback that counts connections (a POST needs one)."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


class RebindingDns(AbstractResolver):
    """A DNS server under an attacker's control: the name answers a private address."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": self.answer,
                "port": port,
                "family": socket.AF_INET6 if ":" in self.answer else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


async def deliver_to(
    runtime: Runtime, url: str, resolver: AbstractResolver | None
) -> tuple[CallbackSender, bool]:
    sender = CallbackSender(
        runtime.gate, allow_private_networks=runtime.settings.callbacks.allow_private_networks
    )
    sender.delays = (0.01, 0.01)
    sender.resolver = resolver
    agent, _ = await runtime.gate.register_agent("agent")
    request, _ = await runtime.gate.submit(
        agent, Submission(ToolCall("crm.read", {"id": 1}), callback_url=url)
    )
    try:
        return sender, await sender.deliver(request)
    finally:
        await sender.close()


@pytest.mark.parametrize("answer", ["127.0.0.1", "169.254.169.254", "::ffff:127.0.0.1"])
async def test_name_resolving_to_a_private_address_is_refused_at_connect_time(
    runtime: Runtime, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    listener = Listener()
    port = await listener.start()
    dns = RebindingDns(answer)
    try:
        caplog.set_level(logging.WARNING, logger="adapters.callbacks")
        sender, delivered = await deliver_to(
            runtime, f"https://hooks.attacker.example:{port}/x", PublicOnlyResolver(dns)
        )
    finally:
        await listener.stop()
    assert not delivered
    assert dns.asked == ["hooks.attacker.example"]  # asked once: not retried
    assert listener.connections == 0
    assert sender.refused._value.get() == 1
    assert any("refused" in r.getMessage() for r in caplog.records)


async def test_literal_private_address_is_refused_at_delivery_without_connecting(
    runtime: Runtime,
) -> None:
    """A request stored with a private callback (submitted before this check existed, or
    through another door) is still never delivered there."""
    listener = Listener()
    port = await listener.start()
    try:
        sender, delivered = await deliver_to(runtime, f"https://127.0.0.1:{port}/x", None)
    finally:
        await listener.stop()
    assert not delivered and listener.connections == 0
    assert sender.refused._value.get() == 1


async def test_allow_private_networks_lets_a_local_receiver_get_the_post(
    tmp_path: Path,
) -> None:
    config = write_home(tmp_path, extra="callbacks: {allow_private_networks: true}\n")
    rt = await build(load_settings(config), adapters=False)
    listener = Listener()
    port = await listener.start()
    try:
        sender, delivered = await deliver_to(rt, f"http://127.0.0.1:{port}/x", None)
        assert not delivered  # the listener hangs up: but it was connected to
        assert listener.connections >= 1 and sender.refused._value.get() == 0
    finally:
        await listener.stop()
        await rt.gate.drain()
        await rt.store.close()


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "224.0.0.1",  # noqa: S104 "::1", "::", "fe80::1", "fc00::1", "fd00::1", "ff02::1",
     "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1"],
)  # fmt: skip
def test_non_public_addresses(address: str) -> None:
    with pytest.raises(PrivateAddress, match=r"not a public address|scoped"):
        check_public(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses(address: str) -> None:
    check_public(address)
