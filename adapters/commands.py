"""Registry of CLI command groups contributed by adapters (audit, report, users, …).

Each named module defines ``register(subparsers, add, common)``; ``adapters.cli.parser``
calls them in order.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

Extension = Callable[[Any, Any, argparse.ArgumentParser], None]

MODULES = (
    "adapters.audit_cli",  # signoff audit verify|prove|export
    "adapters.policy_cli",  # signoff policy check|test|explain|sign
    "adapters.users_cli",  # signoff users …, signoff report
    "adapters.agent.cli",  # signoff mcp-gateway
    "adapters.witness.cli",  # signoff witness init|serve|log-key
)


def extensions() -> list[Extension]:
    return [importlib.import_module(name).register for name in MODULES]
