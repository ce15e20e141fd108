"""Registry of CLI command groups contributed by adapters (audit, report, users, …).

Each entry is called as ``extend(subparsers, add, common)`` by ``adapters.cli.parser``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Extension = Callable[[Any, Any, argparse.ArgumentParser], None]

EXTENSIONS: list[Extension] = []
