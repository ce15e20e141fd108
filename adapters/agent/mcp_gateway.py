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
  decision instead of creating a new one.

The gateway keeps no decision state in memory only: each call is submitted with an
``Idempotency-Key`` derived from the gateway's name, the tool and the arguments' digest, plus a
*generation* that moves on once a request was used up (its grant consumed, or its refusal
shown to the model). A restarted gateway finds the newest generation again with
``GET /v1/requests?idempotency_key=K`` (a handful of look-ups) and picks up a pending request,
an approved one not yet run, or a refusal decided within ``remember`` seconds that it has not
shown yet. What it does keep in memory (the newest generation per call, the refusals it
already showed) is a cache: losing it costs look-ups, never a second request for a pending
call, and never an allow.

An approved call whose arguments an approver edited (rule option ``editable``) is forwarded
with the approved arguments the grant binds; the tool result starts with a note saying so.

Fail closed: signoff unreachable, a grant that does not verify, or any other error gives a
tool error; nothing is forwarded without a valid, unused grant.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import mcp_types as types
from mcp import Client
from mcp.server import Server
from mcp.server.context import ServerRequestContext

from adapters.agent.approval import AsyncApprovals, adopt, edit_note, json_arguments
from adapters.agent.client import AsyncSignoff
from adapters.agent.errors import AgentError, Pending, Unavailable
from adapters.agent.state import RequestState
from bot.errors import RequestError
from bot.evidence.canonical import arguments_sha256

log = logging.getLogger(__name__)

DEFAULT_HOLD = 50.0
DEFAULT_REMEMBER = 24 * 3600.0
MAX_CACHED_CALLS = 10_000


def tool_error(text: str) -> types.CallToolResult:
    """An MCP tool result the model sees as an error (``isError``)."""
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


def told(result: types.CallToolResult, approved: Mapping[str, Any] | None) -> types.CallToolResult:
    """``result`` as the model gets it: first a note when an approver edited the arguments
    (``approved``, what was forwarded), so the model knows which call ran."""
    if approved is None:
        return result
    note = types.TextContent(text=edit_note(approved))
    return result.model_copy(update={"content": [note, *result.content]})


class _UpstreamToolError(Exception):
    """The upstream tool ran and answered with ``isError``: reported as ``failed``."""

    def __init__(self, result: types.CallToolResult) -> None:
        super().__init__("upstream tool error")
        self.result = result


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


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
        #: cache: newest generation per call key, and whether it is used up
        self._generations: dict[str, tuple[int, bool]] = {}
        #: cache: refusals shown to the model (request id → when), kept ``remember`` seconds
        self._shown: dict[str, float] = {}
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
            key = self._call_key(tool, arguments_sha256(json_arguments(arguments)))
        except (TypeError, RequestError) as exc:
            return tool_error(f"The call to {tool} has arguments signoff cannot hash: {exc}")
        state: RequestState | None = None
        try:
            state = await self._decision(tool, arguments, key)
            if not state.final:
                raise Pending(tool, state.id, self.hold)
            refusal = state.refusal()
            if refusal is not None:
                raise refusal
            return await self._forward(state, tool, arguments, key)
        except AgentError as exc:
            if state is not None and state.final:
                self._used_up(key, state)
            log.info("gateway refused %s: %s", tool, type(exc).__name__)
            return tool_error(str(exc))

    def _call_key(self, tool: str, digest: str) -> str:
        identity = f"{self.name}\0{self.prefix}{tool}\0{digest}".encode()
        return "mcp-gateway:" + hashlib.sha256(identity).hexdigest()[:40]

    def _used_up(self, key: str, state: RequestState) -> None:
        if not state.approved:
            self._shown[state.id] = time.monotonic()
        generation, _ = self._generations.get(key, (0, False))
        self._generations[key] = (generation, True)

    def _spent(self, state: RequestState) -> bool:
        """Whether ``state`` was used up, so the same call needs a new request."""
        if not state.final:
            return False
        if state.approved:
            expires = _when(state.raw.get("grant_expires_at"))
            return state.outcome is not None or (
                expires is not None and expires <= datetime.now(UTC)
            )
        decided = _when(state.raw.get("decided_at"))
        recent = decided is not None and (
            (datetime.now(UTC) - decided).total_seconds() <= self.remember
        )
        return state.id in self._shown or not recent

    async def _lookup(self, key: str, generation: int) -> RequestState | None:
        return await self.signoff.find(f"{key}:{generation}")

    async def _newest(self, key: str) -> tuple[int, RequestState | None]:
        """The newest generation of ``key`` that has a request, searched on the server
        (exponential, then binary search: generations are contiguous from 0)."""
        first = await self._lookup(key, 0)
        if first is None:
            return 0, None
        low, low_state, high = 0, first, 1
        while (state := await self._lookup(key, high)) is not None:
            low, low_state, high = high, state, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            state = await self._lookup(key, middle)
            if state is None:
                high = middle
            else:
                low, low_state = middle, state
        return low, low_state

    async def _decision(self, tool: str, arguments: dict[str, Any], key: str) -> RequestState:
        async with self._lock:
            self._expire_old()
            cached = self._generations.get(key)
            state: RequestState | None
            if cached is None:
                generation, state = await self._newest(key)
                spent = state is None or self._spent(state)
                if state is None:
                    generation = -1
            else:
                generation, spent = cached
                state = None if spent else await self._lookup(key, generation)
                spent = state is None or self._spent(state)
            for _ in range(3):  # another gateway under the same name may have moved on
                if not spent and state is not None:
                    break
                generation += 1
                state = await self.signoff.submit(
                    self.prefix + tool,
                    arguments,
                    justification=self.justification,
                    context=self.context,
                    idempotency_key=f"{key}:{generation}",
                )
                spent = self._spent(state)
            if state is None:  # unreachable: the loop submitted at least once
                raise Unavailable("signoff answered no request")
            self._generations[key] = (generation, False)
            if len(self._generations) > MAX_CACHED_CALLS:  # a cache: drop the oldest entry
                del self._generations[next(iter(self._generations))]
        if not state.final:
            state = await self.signoff.wait(state.id, timeout=self.hold)
        return state

    async def _forward(
        self, state: RequestState, tool: str, arguments: dict[str, Any], key: str
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
        approved = run_with if edited else None
        try:
            ran = await self.approvals.run(state, self.prefix + tool, run_with, call)
            return told(cast(types.CallToolResult, ran), approved)
        except _UpstreamToolError as exc:
            return told(exc.result, approved)
        except AgentError:
            raise
        except Exception as exc:  # the upstream server failed; the model gets a tool error
            log.warning("upstream call %s failed: %s", tool, type(exc).__name__)
            return tool_error(f"The call to {tool} was approved but the tool failed: {exc}")
        finally:
            self._used_up(key, state)

    def _expire_old(self) -> None:
        now = time.monotonic()
        for request_id in [i for i, at in self._shown.items() if now - at > self.remember]:
            del self._shown[request_id]


__all__ = ["DEFAULT_HOLD", "Gateway", "told", "tool_error"]
