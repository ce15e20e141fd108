"""After the kills: hold the servers to what they acknowledged.

- every request answered 201 exists, in a state its acknowledged operations allow (an
  acknowledged approve, deny or cancel is the final state); otherwise it is *lost*;
- every transfer followed its ladder: steps 0 and 1 attested once each, then ``expired``;
  a step attested twice is a *step twice* (a missing one is *inconsistent*);
- nothing is approved unless its tier is auto or an approve was tried on it (a *wrong allow*);
- ``signoff audit verify`` passes;
- no grant was accepted twice for ``started``, and each one is refused (409) now;
- every call submitted with a ``callback_url`` (the auto reads) had its callback reach the
  agent's endpoint (a callback a killed process
  was delivering is taken over by another once its hold runs out), or it is *callback lost*;
- every refund still pending has its card in the finance channel (cards a killed process was
  posting are announced again by another), or it is *card lost*.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from tests.chaos.load import Entry, Ledger, Load
from tests.chaos.rig import TRANSFER_STEPS, Home
from tests.e2e.serving import Server

FINAL_WAIT_S = 30
#: how long callbacks and cards may still take after the checks of the requests: the hold
#: of a killed process (30 s from the commit), the take-over's 5 s cadence, and a margin
DELIVERY_WAIT_S = 45


@dataclass
class Report:
    backend: str
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    steps_twice: int = 0
    wrong_allows: int = 0
    grants_twice: int = 0
    inconsistent: int = 0
    callbacks: int = 0
    callbacks_lost: int = 0
    cards: int = 0  # refunds pending at the end: each must have its card
    cards_lost: int = 0
    pending_refunds: list[str] = field(default_factory=list)
    verify_ok: bool = False
    verify_output: str = ""
    problems: list[str] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall time

    @property
    def clean(self) -> bool:
        return (
            self.verify_ok
            and not (self.lost or self.steps_twice or self.wrong_allows or self.grants_twice)
            and not (self.inconsistent or self.callbacks_lost or self.cards_lost)
        )

    def line(self) -> str:
        return (
            f"{self.backend}: kills {self.kills}, acknowledged requests {self.acknowledged}, "
            f"acknowledged requests lost {self.lost}, steps run twice {self.steps_twice}, "
            f"wrong allows {self.wrong_allows}, grants used twice {self.grants_twice}, "
            f"inconsistent {self.inconsistent}, callbacks owed {self.callbacks}, "
            f"callbacks lost {self.callbacks_lost}, cards owed {self.cards}, "
            f"cards lost {self.cards_lost}, "
            f"log verifies {'yes' if self.verify_ok else 'NO'}"
        )


async def get_json(http: aiohttp.ClientSession, server: Server, path: str) -> tuple[int, Any]:
    async with http.get(server.base + path, headers=server.auth) as resp:
        return resp.status, await resp.json(content_type=None)


async def final_state(http: aiohttp.ClientSession, server: Server, entry: Entry) -> Any:
    """The request, waiting out a transfer's ladder; None when the server does not know it."""
    async with asyncio.timeout(FINAL_WAIT_S):
        while True:
            wait = "?wait=20" if entry.kind == "transfer" else ""
            status, body = await get_json(http, server, f"/v1/requests/{entry.id}{wait}")
            if status == 404:
                return None
            assert status == 200, (status, body)
            if entry.kind != "transfer" or body["status"] != "pending":
                return body


async def statements(http: aiohttp.ClientSession, server: Server, rid: str) -> list[Any]:
    """The request's attestation predicates once its final one is in a checkpoint."""
    async with asyncio.timeout(FINAL_WAIT_S):
        while True:
            status, bundle = await get_json(http, server, f"/v1/requests/{rid}/attestations")
            assert status == 200, (status, bundle)
            found = [
                json.loads(base64.b64decode(e["envelope"]["payload"]))["predicate"]
                for e in bundle["entries"]
            ]
            if found and found[-1]["final"]:
                return found
            await asyncio.sleep(0.1)


ALLOWED = {
    "auto": {"approved"},
    "block": {"denied"},
    "transfer": {"expired"},
}


def judge(entry: Entry, body: Any, report: Report) -> None:
    status = body["status"]
    if status == "approved" and entry.kind != "auto" and not entry.approve_tried:
        report.wrong_allows += 1
        report.problems.append(f"{entry.id} ({entry.kind}) approved without an approval")
        return
    acked = {
        "approved": entry.approve_acked,
        "denied": entry.deny_acked,
        "cancelled": entry.cancel_acked,
    }
    if any(acked.values()) and not acked.get(status, False):
        report.lost += 1
        report.problems.append(f"{entry.id}: acknowledged {acked} but {status}")
        return
    if entry.kind in ALLOWED:
        allowed = ALLOWED[entry.kind]
    else:
        # a refund left undecided expires at its 15 m SLA (a full run lasts longer)
        due = datetime.fromisoformat(body["deadline"].replace("Z", "+00:00"))
        allowed = (
            {"pending"}
            | ({"expired"} if due <= datetime.now(UTC) else set())
            | {
                s
                for s, tried in (
                    ("approved", entry.approve_tried),
                    ("denied", entry.deny_tried),
                    ("cancelled", entry.cancel_tried),
                )
                if tried
            }
        )
    if status not in allowed:
        report.inconsistent += 1
        report.problems.append(f"{entry.id} ({entry.kind}) is {status}, expected {allowed}")


def judge_ladder(entry: Entry, found: list[Any], report: Report) -> None:
    steps = Counter(s["detail"]["step"] for s in found if s["decision"] == "escalated")
    twice = sum(n - 1 for n in steps.values() if n > 1)
    report.steps_twice += twice
    finals = [s["decision"] for s in found if s["decision"] != "escalated"]
    if twice:
        report.problems.append(f"{entry.id}: steps {dict(steps)}")
    elif sorted(steps) != list(TRANSFER_STEPS) or finals != ["expired"]:
        report.inconsistent += 1
        report.problems.append(f"{entry.id}: ladder {[s['decision'] for s in found]} {steps}")


async def check_entry(
    http: aiohttp.ClientSession, server: Server, probe: Load, entry: Entry, report: Report
) -> None:
    body = await final_state(http, server, entry)
    if body is None:
        report.lost += 1
        report.problems.append(f"{entry.id} ({entry.kind}) acknowledged but unknown")
        return
    judge(entry, body, report)
    if entry.kind == "refund" and body["status"] == "pending":
        report.pending_refunds.append(entry.id)
    if entry.kind == "transfer" and body["status"] == "expired":
        judge_ladder(entry, await statements(http, server, entry.id), report)
    if body["status"] == "approved":
        entry.grant = entry.grant or body["grant"]
        # the grant is single-use: whatever happened before, two more starts add at most
        # one acceptance (none when one was acknowledged already)
        for _ in range(2):
            await probe.post_outcome(entry, "started")
        if entry.started_acked > 1:
            report.grants_twice += 1
            report.problems.append(f"{entry.id}: grant accepted {entry.started_acked} times")


async def check_deliveries(home: Home, ledger: Ledger, report: Report, *, cards: bool) -> None:
    """Every acknowledged request submitted with a ``callback_url`` (auto: final at once)
    owes one callback, and (``cards``) every refund still pending its card: wait for the last
    ones, then count what never came."""
    owed = {f"{e.id}.approved" for e in ledger.entries.values() if e.callback}
    pending = report.pending_refunds if cards else []
    report.callbacks, report.cards = len(owed), len(pending)

    def missing() -> tuple[list[str], list[str]]:
        posted = " ".join(str(m.blocks) for m in home.slack.cards("C0FINANCE"))
        no_card = [rid for rid in pending if rid not in posted]
        return sorted(owed - home.callbacks.received), no_card

    deadline = asyncio.get_running_loop().time() + DELIVERY_WAIT_S
    callbacks, no_card = missing()
    while (callbacks or no_card) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.5)
        callbacks, no_card = missing()
    report.callbacks_lost, report.cards_lost = len(callbacks), len(no_card)
    report.problems.extend(f"{event}: callback never delivered" for event in callbacks[:20])
    report.problems.extend(f"{rid}: pending without a card" for rid in no_card[:20])


async def check(
    home: Home,
    server: Server,
    http: aiohttp.ClientSession,
    ledger: Ledger,
    report: Report,
    *,
    cards: bool = True,
) -> Report:
    """Run every check against ``server`` (a fresh process after the last kill). ``cards``
    off: pending refunds need not have a card (Slack refused some during an outage: those are
    reported as undeliverable, SPEC §8, not posted again)."""
    report.acknowledged = len(ledger.entries)
    report.answers = dict(sorted(ledger.answers.items()))
    probe = Load([server], http, ledger, seed=0)
    gate = asyncio.Semaphore(16)

    async def one(entry: Entry) -> None:
        async with gate:
            await check_entry(http, server, probe, entry, report)

    await asyncio.gather(*(one(e) for e in ledger.entries.values()))
    await check_deliveries(home, ledger, report, cards=cards)
    code, out = await home.run("audit", "verify", check=False)
    report.verify_ok = code == 0
    report.verify_output = out.strip()[-2000:]
    return report
