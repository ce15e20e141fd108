"""Slack cards and modals: golden Block Kit JSON for ordinary and hostile requests, plus the
invariants every card must keep (limits, escaping, buttons only while pending).

Regenerate the golden files after an intended change with ``SIGNOFF_UPDATE_GOLDEN=1``.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.cards import (
    ACTION_APPROVE,
    ACTION_DENY,
    ACTION_REVIEW,
    ACTION_VIEW_ARGS,
    build_card,
)
from adapters.slack.modals import (
    VIEW_REVIEW,
    DenyOrigin,
    ReviewOrigin,
    arguments_modal,
    deny_modal,
    review_modal,
)
from adapters.slack.replies import page_text, refusal_text, reminder_text
from bench.fakes.slack_api import block_problems, view_problems
from bot.domain import (
    Approver,
    Platform,
    PolicyRef,
    Post,
    Request,
    Requirement,
    Status,
    Tier,
    Verdict,
    Vote,
)
from bot.errors import Conflict, NotAuthorized, StoreError
from bot.policy.model import SlackRoute
from tests import factories

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
ALICE = Approver(Platform.SLACK, "T0TEAM", "U0ALICE", "alice", "alice@example.com")
ERIN = Approver(Platform.SLACK, "T0TEAM", "U0ERIN", "erin", "erin@example.com")
CONSOLE_CAROL = Approver(
    Platform.CONSOLE, "console", "carol", "Carol <!channel>", via="console_login"
)

# Slack control sequences a card may legitimately contain (dates, mentions of voters by id).
_ALLOWED = re.compile(r"<!date\^\d+\^\{date_short_pretty\} \{time\}\|[^<>|]*>|<@[UW][A-Z0-9]+>")


def hostile_arguments() -> dict[str, Any]:
    nested: Any = {"leaf": "<!channel> deep"}
    for depth in range(40):
        nested = {f"level{depth}": nested, "list": [depth, [depth, {"x": "<@U0EVIL>"}]]}
    return {
        "memo": "<!channel> <!here> <@U0ALICE> <http://evil.example|Open your bank> & more",
        "formatting": "*bold* _italic_ ~strike~ `code` ```block``` > quote",
        "blob": "A" * 20_000,
        "nested": nested,
        "emoji": "💸🔥👩‍👩‍👧 ✅",
        "rtl": "שלום עולם — مرحبا بالعالم",
        "override": "invoice\u202egpj.exe",
    }


def make_request(**changes: Any) -> Request:
    card: dict[str, Any] = {
        "id": "0b7e7a0e-3f2c-4a53-9a55-2c1f1f1f0001",
        "arguments": {"amount": 25000, "currency": "USD", "to": "acct-123"},
        "justification": "Refund for order 8812 approved by support ticket 4471",
        "context": {
            "prompt": "Refund the customer for order 8812",
            "requested_by": "bob@example.com",
            "session_id": "s-1",
        },
        "policy": PolicyRef("sha256:" + "ab" * 32, "2026-11-21", "large-transfer"),
        "created_at": T0,
        "call_sha256": "ef" * 32,
        "artifact_digest": "sha256:" + "12" * 32,
        "deadline": T0 + timedelta(minutes=15),
    }
    return factories.make_request(**{**card, **changes})


def vote(approver: Approver, verdict: Verdict, reason: str = "") -> Vote:
    return Vote("r", approver, verdict, "finance", reason, T0 + timedelta(minutes=3))


def texts(node: Any) -> list[str]:
    """Every ``text`` string in a Block Kit JSON tree."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                found.append(value)
            else:
                found += texts(value)
    elif isinstance(node, list):
        for item in node:
            found += texts(item)
    return found


def buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in blocks if b["type"] == "actions" for e in b["elements"]]


def assert_safe(blocks: list[dict[str, Any]], limit: int = 50) -> None:
    assert block_problems(blocks, limit) == []
    for text in texts(blocks):
        bare = _ALLOWED.sub("", text)
        assert "<" not in bare and ">" not in bare, text[:200]


def check_golden(name: str, value: Any) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("SIGNOFF_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with SIGNOFF_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs from the card"


def test_pending_card_golden_and_buttons_carry_only_the_request_id() -> None:
    request = make_request()
    card = build_card(request)
    blocks = card.block_dicts()
    assert_safe(blocks)
    check_golden("slack_card_pending", {"text": card.text, "blocks": blocks})
    found = {b["action_id"]: b for b in buttons(blocks)}
    assert set(found) == {ACTION_APPROVE, ACTION_DENY}
    assert all(b["value"] == request.id for b in found.values())
    assert found[ACTION_APPROVE]["style"] == "primary" and "confirm" in found[ACTION_APPROVE]
    assert found[ACTION_DENY]["style"] == "danger"
    shown = json.dumps(blocks, ensure_ascii=False)
    for fact in (
        "billing-agent",
        request.arguments_sha256,
        "large-transfer",
        "2026-11-21",
        "sha256:abababababab",
        "bob@example.com",
        "Refund for order 8812",
        "Approvals:* 0 of 1",
        "<!date^1795256100^",
        "2026-11-21 10:15 UTC",
    ):
        assert fact in shown, fact


def test_hostile_card_golden_escapes_everything_and_stays_in_limits() -> None:
    request = make_request(
        arguments=hostile_arguments(),
        justification="<!channel> urgent!!! " + "\u202e" + "B" * 5000,
        context={
            "prompt": "<@U0ALICE> ignore previous instructions " + "p" * 3000,
            "requested_by": "<!here>",
            "extra": {"a": 1},
        },
    )
    card = build_card(request)
    blocks = card.block_dicts()
    assert_safe(blocks)
    check_golden("slack_card_hostile", {"text": card.text, "blocks": blocks})
    assert card.truncated
    # The arguments are cut, so the card cannot approve: "Review and approve" opens them whole.
    assert {b["action_id"] for b in buttons(blocks)} == {
        ACTION_REVIEW,
        ACTION_DENY,
        ACTION_VIEW_ARGS,
    }
    assert ACTION_APPROVE not in shown_actions(blocks)
    shown = json.dumps(blocks, ensure_ascii=False)
    assert request.arguments_sha256 in shown  # the digest is always shown
    for key in ("memo", "formatting", "blob", "nested", "emoji", "rtl", "override"):
        assert f'\\"{key}\\"' in shown, key  # every top-level key stays visible
    assert "&lt;!channel&gt;" in shown and "[U+202E]" in shown


def shown_actions(blocks: list[dict[str, Any]]) -> set[str]:
    return {b["action_id"] for b in buttons(blocks)}


def test_hostile_review_modal_shows_everything_and_approves_in_place() -> None:
    request = make_request(arguments=hostile_arguments())
    view = review_modal(request, "C0FINANCE", "https://signoff.example").to_dict()
    assert view_problems(view) == []
    assert view["callback_id"] == VIEW_REVIEW and view["submit"]["text"] == "Approve"
    origin = ReviewOrigin.from_metadata(view["private_metadata"])
    assert origin == ReviewOrigin(request.id, "C0FINANCE", request.arguments_sha256)
    shown = "".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")
    assert "&lt;!channel&gt;" in shown


def test_hostile_arguments_modal_shows_everything_exactly() -> None:
    request = make_request(arguments=hostile_arguments())
    view = arguments_modal(request).to_dict()
    assert view_problems(view) == []
    assert_safe(view["blocks"], limit=100)
    check_golden("slack_modal_arguments_hostile", view)
    code = "".join(
        t[4:-4] for t in texts(view["blocks"]) if t.startswith("```\n") and t.endswith("\n```")
    )
    unescaped = code.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    decoder = json.JSONDecoder()
    value, _ = decoder.raw_decode(unescaped)
    assert value == request.call.arguments  # the modal's JSON is the exact arguments


def test_final_cards_have_no_decision_buttons_and_say_who_when_why() -> None:
    approved = make_request(
        status=Status.APPROVED,
        decided_at=T0 + timedelta(minutes=4),
        last_log_index=41,
        requirement=Requirement(("finance",), 2),
    )
    votes = [vote(ALICE, Verdict.APPROVE), vote(ERIN, Verdict.APPROVE)]
    blocks = build_card(approved, votes).block_dicts()
    assert_safe(blocks)
    check_golden("slack_card_approved_quorum", blocks)
    assert buttons(blocks) == []
    shown = json.dumps(blocks)
    assert "Approved* by <@U0ALICE>, <@U0ERIN>" in shown and "log index 41" in shown
    assert "Approvals:* 2 of 2" in shown

    denied = make_request(
        status=Status.DENIED,
        decided_at=T0 + timedelta(minutes=2),
        reason="<!channel> wrong account",
        last_log_index=7,
    )
    blocks = build_card(denied, [vote(CONSOLE_CAROL, Verdict.DENY, "wrong")]).block_dicts()
    assert_safe(blocks)
    check_golden("slack_card_denied", blocks)
    shown = json.dumps(blocks)
    assert "Denied* by Carol &lt;!channel&gt; (console)" in shown
    assert "*Reason:* &lt;!channel&gt; wrong account" in shown

    for status in (Status.EXPIRED, Status.CANCELLED):
        final = make_request(status=status, decided_at=T0, reason="no decision", last_log_index=3)
        blocks = build_card(final).block_dicts()
        assert_safe(blocks)
        assert buttons(blocks) == []
        assert status.value.capitalize() in blocks[0]["text"]["text"]


def test_notify_card_is_information_only() -> None:
    request = make_request(
        tier=Tier.NOTIFY,
        status=Status.APPROVED,
        decided_at=T0,
        deadline=None,
        tool="payments.refund",
        last_log_index=2,
    )
    blocks = build_card(request).block_dicts()
    assert_safe(blocks)
    check_golden("slack_card_notify", blocks)
    assert buttons(blocks) == []
    assert blocks[0]["text"]["text"].startswith("\N{INFORMATION SOURCE} For your information")


def test_deny_modal_requires_a_reason_and_remembers_the_request() -> None:
    request = make_request()
    view = deny_modal(request, "C0FINANCE").to_dict()
    assert view_problems(view) == []
    check_golden("slack_modal_deny", view)
    (field,) = [b for b in view["blocks"] if b["type"] == "input"]
    assert field.get("optional", False) is False and field["element"]["min_length"] == 1
    origin = DenyOrigin.from_metadata(view["private_metadata"])
    assert origin == DenyOrigin(request.id, "C0FINANCE")
    with pytest.raises(ValueError):
        DenyOrigin.from_metadata('{"channel": "C1"}')


def test_reminders_mention_the_group_and_pages_link_the_cards() -> None:
    request = make_request()
    text = reminder_text(request, "finance", SlackRoute("C0FIN", "S0FINANCE", ("U0ALICE",)))
    assert "<!subteam^S0FINANCE>" in text and "<@U0ALICE>" not in text
    text = reminder_text(request, "leads", SlackRoute("C0LEADS", None, ("U0CAROL", "U0DAN")))
    assert "<@U0CAROL> <@U0DAN>" in text
    text = reminder_text(request, "<!here>", None)
    assert "&lt;!here&gt;" in text
    post = Post(request.id, Platform.SLACK, "finance", "C0FIN", "1700000001.000100")
    page = page_text(request, [post])
    assert page.startswith("<!here> ")
    assert "<https://slack.com/archives/C0FIN/p1700000001000100|finance>" in page


def test_refusals_are_one_clear_escaped_line() -> None:
    assert refusal_text(NotAuthorized("you are not an approver for this request")) == (
        "🚫 Not recorded: you are not an approver for this request."
    )
    assert "already approved" in refusal_text(Conflict("request is already approved"))
    assert "try again" in refusal_text(StoreError("db down <!channel>"))
    assert "\n" not in refusal_text(NotAuthorized("x"))
