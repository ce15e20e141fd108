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
    "adapters.console.cli",  # signoff users …, signoff report
    "adapters.agent.cli",  # signoff mcp-gateway
)


def extensions() -> list[Extension]:
    found: list[Extension] = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # transitional while the adapter is being built
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        found.append(module.register)
    return found
