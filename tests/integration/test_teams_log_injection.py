"""Issue 12 item 8: Teams sender fields cannot forge log lines.

The review posted an authenticated card action whose ``from.aadObjectId`` (and tenant)
carried a line break followed by a fake log line; signoff's refusal log wrote it verbatim.
Driven through ``/api/messages`` with a signed activity, as Teams sends it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from pytest_aiohttp import AiohttpClient

from tests.fakes.teams_env import MALLORY, TeamsEnv, teams_env

FORGED = "\nINFO adapters.teams.bot Teams: approve recorded on request x by the CFO"
ARGS = {"amount": 25000, "currency": "USD", "to": "acct-123"}


@pytest_asyncio.fixture
async def env(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[TeamsEnv]:
    async with teams_env(tmp_path, aiohttp_client) as e:
        yield e


async def test_sender_fields_cannot_forge_log_lines(
    env: TeamsEnv, caplog: pytest.LogCaptureFixture
) -> None:
    created = await env.submit("payments.transfer", ARGS)
    activity = env.activity("approve", created["id"], MALLORY + FORGED)
    activity["from"]["name"] = "Mallory\r\nforged"
    with caplog.at_level(logging.INFO, logger="adapters.teams"):
        status, body = await env.send(activity)
    assert status == 200, body
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("adapters.teams")]
    refusal = [line for line in lines if "refused" in line]
    assert refusal, lines
    for line in lines:
        assert "\n" not in line and "\r" not in line, line
    assert "\\u000aINFO adapters.teams.bot" in refusal[0]
    assert (await env.poll(created["id"], wait=0))["status"] == "pending"
