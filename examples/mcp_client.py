"""Drive the gateway like an MCP host would: list tools, call one (held for approval).

.venv/bin/python examples/mcp_client.py
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from demo_home import ROOT, token, url
from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent


async def main() -> None:
    gateway = StdioServerParameters(
        command=str(ROOT / ".venv" / "bin" / "signoff"),
        args=[
            "mcp-gateway",
            "--url",
            url(),
            "--tool-prefix",
            "payments.",
            "--hold",
            "50",
            "--",
            sys.executable,
            str(HERE / "mcp_upstream_server.py"),
        ],
        env={"SIGNOFF_TOKEN": token()},
    )
    async with Client(gateway) as session:
        print([t.name for t in (await session.list_tools()).tools])
        print("calling transfer (approve it in the console within 50 s) ...")
        result = await session.call_tool(
            "transfer", {"amount": 25000, "currency": "USD", "to": "acct-123"}
        )
        print(
            "error:" if result.is_error else "ok:", [getattr(c, "text", c) for c in result.content]
        )


if __name__ == "__main__":
    asyncio.run(main())
