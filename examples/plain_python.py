"""Plain Python: gate tool functions with ``require_approval``.

Run ``make run`` in one terminal, then ``.venv/bin/python examples/plain_python.py``.
The 25,000 transfer waits until alice approves (or denies) it in the console.
"""

from __future__ import annotations

from demo_home import token, url

from adapters.agent import Refused, Signoff, require_approval

signoff = Signoff(url(), token())


@require_approval(signoff, tool="crm.read")
def read_customer(id: int) -> dict[str, object]:
    return {"id": id, "name": "Ada Lovelace"}


@require_approval(
    signoff, tool="payments.transfer", justification=lambda a: f"refund to {a['to']} (ticket 4471)"
)
def transfer(amount: int, currency: str, to: str) -> str:
    return f"transferred {amount} {currency} to {to}"


@require_approval(signoff, tool="repos.force_push")
def force_push(repo: str, branch: str) -> str:
    return f"pushed {repo}@{branch}"


if __name__ == "__main__":
    print(read_customer(42))  # auto: runs at once, with a verified grant
    print("waiting for a finance approver (console: alice) ...")
    try:
        print(transfer(25_000, "USD", "acct-123", signoff_context={"session_id": "demo"}))
    except Refused as exc:
        print("refused:", exc)  # the text is fit to hand back to a model
    try:
        force_push("core", "main")
    except Refused as exc:
        print("refused:", exc)
