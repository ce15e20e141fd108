"""A Teams card that cannot be delivered escalates sooner (SPEC §8), through the composition
root's wiring, against the fake Bot Framework connector; it never allows anything."""

from __future__ import annotations

from pathlib import Path

from pytest_aiohttp import AiohttpClient

from bot.domain import Event, Status
from tests.fakes.teams_env import LEADS, POLICY, teams_env

ESCALATING = POLICY.replace(
    """    tool: payments.transfer
    tier: confirm
    approvers: {{groups: [finance]}}
""",
    """    tool: payments.transfer
    tier: confirm
    approvers: {{groups: [finance]}}
    sla: 30m
    escalation:
      - {{after: 10m, to: leads}}
      - {{after: 30m, action: deny}}
""",
)


async def test_undeliverable_card_brings_the_next_step_forward(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    assert ESCALATING != POLICY
    async with teams_env(
        tmp_path, aiohttp_client, policy_template=ESCALATING, escalation=True
    ) as env:
        # every attempt to post the finance card fails (the connector tries 5 times)
        env.fake.fail("post", 500, times=env.channel.connector.attempts)
        body = await env.submit("payments.transfer", {"amount": 25000})
        rid = body["id"]
        # the group the early step adds gets its card (the step committed before it)
        await env.fake.wait_for(lambda: env.fake.posts(LEADS))
        request = await env.runtime.gate.get(rid)
        assert request.steps_done == 1
        assert request.status is Status.PENDING  # never allowed by a failure
        assert request.extra_groups == ("leads",)
        events = [e.event for e in await env.runtime.store.log_entries_for(rid)]
        assert events == [Event.ESCALATED]
        assert (await env.poll(rid, wait=0))["status"] == "pending"
