"""Where the examples find signoff: ``make run``'s demo home (``.demo/``) by default.

``SIGNOFF_URL`` (default http://127.0.0.1:8080) and ``SIGNOFF_TOKEN`` (default: the token in
``.demo/demo-agent.token``) override it. In the demo policy, ``crm.read`` is auto-approved,
``payments.transfer`` under 10,000 is auto and from 10,000 needs finance (log in to
http://127.0.0.1:8080/console as alice to approve), ``repos.force_push`` to main is blocked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def url() -> str:
    return os.environ.get("SIGNOFF_URL", "http://127.0.0.1:8080")


def token() -> str:
    if os.environ.get("SIGNOFF_TOKEN"):
        return os.environ["SIGNOFF_TOKEN"]
    path = ROOT / ".demo" / "demo-agent.token"
    if not path.exists():
        sys.exit(f"no {path}: start the demo server with `make run` first")
    return path.read_text(encoding="utf-8").strip()
