"""A tiny MCP server to put behind ``signoff mcp-gateway`` (stdio).

    .venv/bin/signoff mcp-gateway --token-file .demo/demo-agent.token --tool-prefix payments. \
        -- .venv/bin/python examples/mcp_upstream_server.py

Point an MCP host (Claude Desktop, Cursor, an ``mcp.Client``) at that command instead of this
server: ``transfer`` becomes signoff tool ``payments.transfer`` (confirm from 10,000).
"""

from mcp.server.mcpserver import MCPServer

server = MCPServer("payments")


@server.tool()
def transfer(amount: int, currency: str, to: str) -> str:
    """Send money to an account."""
    return f"transferred {amount} {currency} to {to}"


if __name__ == "__main__":
    server.run()
