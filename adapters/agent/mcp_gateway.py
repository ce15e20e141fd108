"""The MCP gateway: an MCP server that fronts any MCP server and gates its tools with signoff.

Built on the official ``mcp`` SDK's low-level ``Server``. ``tools/list`` is passed through
from the upstream server. Every ``tools/call`` becomes a signoff request under the
gateway's agent token (tool = the MCP tool name, arguments = the call's arguments):

- ``auto``/``notify``: approved at once; the grant is verified offline, ``started`` is
  reported, the call is forwarded, and ``succeeded``/``failed`` reported;
- ``block``, ``denied``, ``expired``, ``cancelled``: a tool error (``isError``) carrying the
  reason, so the model can see it and adapt;
- ``confirm``: the call is held up to ``hold`` seconds (default 50, under common client
  time-outs) and forwarded once approved; otherwise a tool error names the pending request,
  and a retry of the *same* call (same tool, same arguments) picks up that request's
  decision instead of creating a new one. Pending calls are remembered in memory by
  ``(tool, arguments_sha256)`` for ``remember`` seconds.

Fail closed: signoff unreachable, a grant that does not verify, or any other error gives a
tool error; nothing is forwarded without a valid, unused grant.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp import Client
from mcp.server import Server
from mcp.server.context import ServerRequestContext

from adapters.agent.approval import AsyncApprovals, adopt, json_arguments
from adapters.agent.client import AsyncSignoff
from adapters.agent.errors import AgentError, Pending
from adapters.agent.state import RequestState
from bot.errors import RequestError
from bot.evidence.canonical import arguments_sha256

log = logging.getLogger(__name__)

DEFAULT_HOLD = 50.0
DEFAULT_REMEMBER = 24 * 3600.0


def tool_error(text: str) -> types.CallToolResult:
    """An MCP tool result the model sees as an error (``isError``)."""
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


class _UpstreamToolError(Exception):
    """The upstream tool ran and answered with ``isError``: reported as ``failed``."""

    def __init__(self, result: types.CallToolResult) -> None:
        super().__init__("upstream tool error")
        self.result = result


@dataclass
class _Held:
    request_id: str
    since: float = field(default_factory=time.monotonic)


class Gateway:
    """Gates ``upstream``'s tools with signoff. ``upstream`` is an entered ``mcp.Client``."""

    def __init__(
        self,
        signoff: AsyncSignoff,
        upstream: Client,
        *,
        hold: float = DEFAULT_HOLD,
        remember: float = DEFAULT_REMEMBER,
        justification: str = "tool call through the signoff MCP gateway",
        context: Mapping[str, Any] | None = None,
        name: str = "signoff-gateway",
        prefix: str = "",
    ) -> None:
        self.signoff = signoff
        self.approvals = AsyncApprovals(signoff, timeout=hold)
        self.upstream = upstream
        self.hold = hold
        self.remember = remember
        self.justification = justification
        self.context = dict(context or {"via": "mcp-gateway"})
        self.name = name
        #: prepended to MCP tool names to form the signoff tool name (e.g. ``github.``)
        self.prefix = prefix
        self._held: dict[tuple[str, str], _Held] = {}
        self._lock = asyncio.Lock()

    def server(self) -> Server[Any]:
        """The MCP server to expose (over stdio or streamable HTTP)."""
        upstream_info = self.upstream.server_info
        return Server(
            self.name,
            version="1",
            instructions=(
                "Tools of "
                f"{upstream_info.name if upstream_info else 'the upstream server'}, gated by "
                "signoff: some calls wait for a human; a call that reports a pending request "
                "can be retried unchanged to pick up the decision."
            ),
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
        )

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        """Passthrough of the upstream listing."""
        listing = await self.upstream.list_tools(cursor=params.cursor if params else None)
        return types.ListToolsResult(tools=listing.tools, next_cursor=listing.next_cursor)

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return await self.gate(params.name, dict(params.arguments or {}))

    async def gate(self, tool: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Decide and (when approved) forward one call; never raises for a refusal."""
        try:
            key = (tool, arguments_sha256(json_arguments(arguments)))
        except (TypeError, RequestError) as exc:
            return tool_error(f"The call to {tool} has arguments signoff cannot hash: {exc}")
        try:
            state = await self._decision(tool, arguments, key)
            if not state.final:
                raise Pending(tool, state.id, self.hold)
            refusal = state.refusal()
            if refusal is not None:
                raise refusal
            return await self._forward(state, tool, arguments)
        except AgentError as exc:
            if not isinstance(exc, Pending):
                self._forget(key)
            log.info("gateway refused %s: %s", tool, type(exc).__name__)
            return tool_error(str(exc))

    async def _decision(
        self, tool: str, arguments: dict[str, Any], key: tuple[str, str]
    ) -> RequestState:
        async with self._lock:
            self._expire_old()
            held = self._held.get(key)
            if held is None:
                state = await self.signoff.submit(
                    self.prefix + tool,
                    arguments,
                    justification=self.justification,
                    context=self.context,
                )
                if not state.final:
                    self._held[key] = _Held(state.id)
            else:
                state = await self.signoff.get(held.request_id)
        if not state.final:
            state = await self.signoff.wait(state.id, timeout=self.hold)
        return state

    async def _forward(
        self, state: RequestState, tool: str, arguments: dict[str, Any]
    ) -> types.CallToolResult:
        def forward(sent: Mapping[str, Any]) -> Callable[[], Awaitable[types.CallToolResult]]:
            async def call() -> types.CallToolResult:
                result = await self.upstream.call_tool(tool, dict(sent))
                if result.is_error:
                    raise _UpstreamToolError(result)
                return result

            return call

        # An approver's edit (rule option editable) is what the grant binds: forward that.
        run_with, edited = adopt(state, self.prefix + tool, arguments, forward)
        call = edited or forward(arguments)
        try:
            return await self.approvals.run(state, self.prefix + tool, run_with, call)
        except _UpstreamToolError as exc:
            return exc.result
        except AgentError:
            raise
        except Exception as exc:  # the upstream server failed; the model gets a tool error
            log.warning("upstream call %s failed: %s", tool, type(exc).__name__)
            return tool_error(f"The call to {tool} was approved but the tool failed: {exc}")
        finally:
            self._forget((tool, arguments_sha256(json_arguments(arguments))))

    def _forget(self, key: tuple[str, str]) -> None:
        self._held.pop(key, None)

    def _expire_old(self) -> None:
        now = time.monotonic()
        for key in [k for k, h in self._held.items() if now - h.since > self.remember]:
            del self._held[key]


__all__ = ["DEFAULT_HOLD", "Gateway", "tool_error"]
