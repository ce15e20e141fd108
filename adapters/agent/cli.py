"""``signoff mcp-gateway``: run the MCP gateway in front of an MCP server.

Upstream: a stdio command (after ``--``) or a streamable HTTP URL (``--upstream-url``).
The gateway itself speaks stdio (default, for MCP hosts that launch it) or streamable HTTP
(``--listen http``). The agent token comes from ``--token-file`` or ``$SIGNOFF_TOKEN``; it
is never passed to the upstream server (stdio upstreams get the SDK's minimal environment).

Raises ``ConfigError`` for a missing token or upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8080"


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{args.token_file}: cannot read the token ({exc.strerror})") from exc
    else:
        token = os.environ.get("SIGNOFF_TOKEN", "").strip()
    if not token:
        raise ConfigError("no agent token: pass --token-file FILE or set SIGNOFF_TOKEN")
    return token


def _upstream(args: argparse.Namespace) -> Any:
    from mcp import StdioServerParameters

    command = [c for c in args.command if c != "--"]
    if args.upstream_url and command:
        raise ConfigError("give either --upstream-url or a command after --, not both")
    if args.upstream_url:
        return str(args.upstream_url)
    if not command:
        raise ConfigError("no upstream MCP server: give --upstream-url URL or -- COMMAND ARGS")
    if len(command) == 1 and " " in command[0]:
        command = shlex.split(command[0])
    return StdioServerParameters(command=command[0], args=command[1:])


async def run_gateway(args: argparse.Namespace) -> None:
    """Connect to signoff and the upstream server, then serve until stopped."""
    from mcp import Client
    from mcp.server.stdio import stdio_server

    from adapters.agent.client import AsyncSignoff
    from adapters.agent.mcp_gateway import Gateway

    token = _token(args)
    upstream = _upstream(args)
    async with AsyncSignoff(args.url, token) as signoff, Client(upstream) as client:
        gateway = Gateway(signoff, client, hold=args.hold, prefix=args.tool_prefix)
        server = gateway.server()
        if args.listen == "stdio":
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
            return
        import uvicorn

        app = server.streamable_http_app(streamable_http_path=args.path, host=args.host)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
        await uvicorn.Server(config).serve()


def cmd_mcp_gateway(args: argparse.Namespace) -> int:
    asyncio.run(run_gateway(args))
    return 0


def register(subparsers: Any, add: Any, common: argparse.ArgumentParser) -> None:
    sp = add(
        "mcp-gateway",
        cmd_mcp_gateway,
        "gate any MCP server's tools with signoff (an MCP server in front of it)",
    )
    sp.add_argument(
        "--url",
        default=os.environ.get("SIGNOFF_URL", DEFAULT_URL),
        help=f"signoff server URL (default $SIGNOFF_URL or {DEFAULT_URL})",
    )
    sp.add_argument(
        "--token-file", default=None, help="file holding the agent token (default: $SIGNOFF_TOKEN)"
    )
    sp.add_argument(
        "--hold",
        type=float,
        default=50.0,
        help="seconds to hold a confirm-tier call before answering 'pending' (50)",
    )
    sp.add_argument(
        "--tool-prefix",
        default="",
        help="prefix of the signoff tool names, e.g. 'github.' (default: none)",
    )
    sp.add_argument(
        "--upstream-url", default=None, help="streamable HTTP URL of the upstream MCP server"
    )
    sp.add_argument(
        "--listen",
        choices=("stdio", "http"),
        default="stdio",
        help="how the gateway itself is reached (default stdio)",
    )
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8765)
    sp.add_argument("--path", default="/mcp", help="HTTP path of the gateway (default /mcp)")
    sp.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="-- COMMAND ARGS: the upstream MCP server to launch over stdio",
    )


__all__ = ["register", "run_gateway"]
