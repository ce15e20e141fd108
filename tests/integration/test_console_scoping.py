"""Issue 12 item 8, console: each viewer sees only their groups' review data, and hidden
characters in agent text are shown, never rendered raw.

The review logged in as a user of one group and read every group's report at
``/console/report``; and submitted arguments with a right-to-left override that the console
printed as is (so ``acct-123`` could read as something else). Driven over real HTTP against a
server on a loopback port.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from tests.integration.console_support import TRANSFER, Server, fresh_session, running_server
from tests.integration.console_support import http_login as login

DELETE = {
    "tool": "db.delete",
    "arguments": {"table": "customers"},
    "justification": "cleanup",
    "context": {},
}


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path) as running:
        yield running


async def report_as(server: Server, name: str) -> dict[str, Any]:
    async with fresh_session() as http:
        assert (await login(http, server.url, name)).status == 303
        async with http.get(f"{server.url}/console/report?format=json") as resp:
            assert resp.status == 200
            data: dict[str, Any] = await resp.json()
            return data


async def test_each_viewer_sees_only_their_groups_report(server: Server) -> None:
    await server.submit(TRANSFER)  # finance (alice, dave)
    await server.submit(DELETE)  # dba (bob)
    await server.submit(DELETE)

    alice = await report_as(server, "alice")
    assert alice["requests"] == 1
    assert [t["key"] for t in alice["tools"]] == ["payments.transfer"]
    assert [g["key"] for g in alice["groups"]] == ["finance"]

    bob = await report_as(server, "bob")
    assert bob["requests"] == 2
    assert [t["key"] for t in bob["tools"]] == ["db.delete"]

    carol = await report_as(server, "carol")  # leads: nothing routed there
    assert carol["requests"] == 0 and carol["tools"] == []


async def test_hidden_characters_are_shown_not_rendered(server: Server) -> None:
    body = {
        **TRANSFER,
        "arguments": {"amount": 25000, "to": "acct-\u202e321-tcca\u200b"},
        "justification": "Refund\u2066 approved\u2069 by\u0007 support",
    }
    rid = (await server.submit(body))["id"]
    async with fresh_session() as http:
        assert (await login(http, server.url, "alice")).status == 303
        async with http.get(f"{server.url}/console/requests/{rid}") as resp:
            assert resp.status == 200
            page = await resp.text()
    for hidden in "\u202e\u200b\u2066\u2069\u0007":
        assert hidden not in page
    # the arguments stay JSON for the same value (\u escapes), free text gets markers
    assert "acct-\\u202e321-tcca\\u200b" in page
    assert (
        "Refund\u27e6U+2066\u27e7 approved\u27e6U+2069\u27e7 by\u27e6U+0007\u27e7 support" in page
    )
