"""A fake Slack Web API: an aiohttp server on an ephemeral port for the real slack_sdk client.

Implements ``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``,
``views.open``, ``usergroups.users.list``, ``users.info`` and ``users.lookupByEmail`` the way
Slack answers them (HTTP 200 with ``{"ok": false, "error": …}`` for API errors), enforces the
Block Kit limits signoff relies on (section text ≤ 3000, fields ≤ 2000, ≤ 50 message blocks,
≤ 100 modal blocks, header ≤ 150, button value ≤ 2000), and can inject 429 (+ ``Retry-After``),
5xx and slow answers per method, or to every call for a while (``outage``). Every call is
recorded so tests can assert on it, and ``wait_for`` lets a test wait for a call without
sleeping blindly.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

T = TypeVar("T")

MESSAGE_BLOCKS = 50
MODAL_BLOCKS = 100
SECTION_TEXT = 3000
FIELD_TEXT = 2000
HEADER_TEXT = 150
BUTTON_VALUE = 2000
BUTTON_TEXT = 75
MODAL_TITLE = 24
PRIVATE_METADATA = 3000


@dataclass
class Call:
    """One Web API call as the fake received it (arguments already decoded)."""

    method: str
    args: dict[str, Any]
    status: int
    answer: dict[str, Any]
    at: float


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    edits: int = 0


@dataclass
class Fault:
    status: int = 429
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    error: str | None = None  # an ok:false answer instead of an HTTP error


class FakeSlack:
    """The fake Slack workspace and its Web API server."""

    def __init__(
        self,
        *,
        token: str = "xoxb-signoff-test",  # noqa: S107 - a fake workspace's token
        team_id: str = "T0TEAM",
        bot_user_id: str = "U0BOT",
    ) -> None:
        self.token = token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.emails: dict[str, str] = {}
        self.channels: set[str] | None = None  # None: every channel exists and has the bot
        self.faults: defaultdict[str, deque[Fault]] = defaultdict(deque)
        self.delays: dict[str, float] = {}
        #: called with each call as it is recorded (benchmarks time card arrival with it)
        self.observers: list[Callable[[Call], None]] = []
        self._ts = itertools.count(1)
        self._outage_until = 0.0
        self._outage: Iterator[Fault] = iter(())
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ setup

    def add_user(
        self,
        user_id: str,
        name: str,
        email: str | None = None,
        *,
        deleted: bool = False,
        is_bot: bool = False,
        team_id: str | None = None,
        hide_email: bool = False,
    ) -> None:
        """``hide_email``: ``users.info`` omits the address (as without ``users:read.email``)
        while ``users.lookupByEmail`` still finds the user by it."""
        profile: dict[str, Any] = {"display_name": name, "real_name": name.title()}
        if email is not None:
            self.emails[email.casefold()] = user_id
            if not hide_email:
                profile["email"] = email
        self.users[user_id] = {
            "id": user_id,
            "team_id": team_id or self.team_id,
            "name": name,
            "real_name": name.title(),
            "deleted": deleted,
            "is_bot": is_bot,
            "profile": profile,
        }

    def add_usergroup(self, group_id: str, members: list[str]) -> None:
        self.usergroups[group_id] = list(members)

    def inject(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int | None = None,
        delay: float = 0.0,
        error: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (HTTP ``status``, or ``ok: false``
        with ``error``) and/or answer after ``delay`` seconds."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        for _ in range(times):
            self.faults[method].append(Fault(status, headers, delay, error))

    def outage(self, seconds: float, faults: Sequence[Fault]) -> None:
        """For ``seconds`` from now, answer every call with the next of ``faults`` in turn
        (a ``Fault`` with a ``delay`` beyond the client's time-out is a time-out)."""
        self._outage_until = time.monotonic() + seconds
        self._outage = itertools.cycle(faults)

    def _fault(self, method: str) -> Fault | None:
        if self.faults[method]:
            return self.faults[method].popleft()
        if time.monotonic() < self._outage_until:
            return next(self._outage)
        return None

    async def start(self) -> str:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/api/"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ queries for tests

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def ok_calls(self, method: str) -> list[Call]:
        return [c for c in self.calls_to(method) if c.answer.get("ok")]

    def ephemerals(self, user: str) -> list[str]:
        """The texts of the ephemeral messages successfully posted to ``user``, in order."""
        return [
            c.args["text"]
            for c in self.ok_calls("chat.postEphemeral")
            if c.args.get("user") == user
        ]

    def cards(self, channel: str | None = None) -> list[Message]:
        """Top-level messages (not thread replies), in posting order."""
        return [
            m
            for m in self.messages.values()
            if m.thread_ts is None and (channel is None or m.channel == channel)
        ]

    def replies(self, channel: str, thread_ts: str) -> list[Message]:
        return [
            m for m in self.messages.values() if m.channel == channel and m.thread_ts == thread_ts
        ]

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0) -> T:
        """Wait until ``predicate()`` returns something truthy (re-checked after each call)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                while True:
                    value = predicate()
                    if value:
                        return value
                    await self._changed.wait()

    # ------------------------------------------------------------------ the server

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _arguments(request)
        fault = self._fault(method)
        delay = (fault.delay if fault else 0.0) or self.delays.get(method, 0.0)
        if delay:
            await asyncio.sleep(delay)
        status = 200
        answer: dict[str, Any] = {"ok": True}
        headers: dict[str, str] = {}
        if fault is not None and (fault.status != 200 or fault.error):
            if fault.error:
                answer = {"ok": False, "error": fault.error}
            else:
                status = fault.status
                headers = fault.headers
                answer = {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"}
        elif request.headers.get("Authorization") != f"Bearer {self.token}":
            answer = {"ok": False, "error": "invalid_auth"}
        else:
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            answer = handler(args) if handler else {"ok": False, "error": "unknown_method"}
        call = Call(method, args, status, answer, time.monotonic())
        self.calls.append(call)
        for observe in self.observers:
            observe(call)
        async with self._changed:
            self._changed.notify_all()
        return web.json_response(answer, status=status, headers=headers)

    # ------------------------------------------------------------------ methods

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://signoff-test.slack.com/",
            "team": "signoff test",
            "user": "signoff",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": "B0BOT",
            "is_enterprise_install": False,
        }

    def _channel_error(self, channel: Any) -> dict[str, Any] | None:
        if not isinstance(channel, str) or not channel:
            return {"ok": False, "error": "channel_not_found"}
        if self.channels is not None and channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        return None

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if (err := self._channel_error(channel)) is not None:
            return err
        blocks = _blocks(args)
        problems = message_problems(args.get("text"), blocks)
        if problems:
            return {"ok": False, "error": "invalid_blocks", "errors": problems}
        ts = f"{1_700_000_000 + next(self._ts)}.000100"
        thread = args.get("thread_ts")
        message = Message(str(channel), ts, str(args.get("text") or ""), blocks, thread)
        self.messages[(message.channel, ts)] = message
        answer = {"ts": ts, "text": message.text}
        return {"ok": True, "channel": channel, "ts": ts, "message": answer}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel"), args.get("ts")
        if (err := self._channel_error(channel)) is not None:
            return err
        message = self.messages.get((str(channel), str(ts)))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        blocks = _blocks(args)
        problems = message_problems(args.get("text"), blocks)
        if problems:
            return {"ok": False, "error": "invalid_blocks", "errors": problems}
        message.text = str(args.get("text") or "")
        message.blocks = blocks
        message.edits += 1
        return {"ok": True, "channel": channel, "ts": ts, "text": message.text}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if (err := self._channel_error(args.get("channel"))) is not None:
            return err
        if args.get("user") not in self.users:
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": f"{1_700_000_000 + next(self._ts)}.000200"}

    def _m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        problems = view_problems(view)
        if problems:
            return {
                "ok": False,
                "error": "invalid_arguments",
                "response_metadata": {"messages": problems},
            }
        assert isinstance(view, dict)
        return {"ok": True, "view": {**view, "id": f"V{next(self._ts):08d}"}}

    def _m_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        members = self.usergroups.get(str(args.get("usergroup")))
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(members)}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}

    def _m_users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = self.emails.get(str(args.get("email", "")).casefold())
        if user_id is None or user_id not in self.users:
            return {"ok": False, "error": "users_not_found"}
        return {"ok": True, "user": self.users[user_id]}


# ---------------------------------------------------------------------- decoding and limits


async def _arguments(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query)
    raw = await request.read()
    if not raw:
        return args
    if request.content_type == "application/json":
        args.update(json.loads(raw))
    else:
        args.update(dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True)))
    return args


def _blocks(args: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = args.get("blocks") or []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    return list(blocks)


def _text_problems(obj: Any, where: str, limit: int, kinds: tuple[str, ...]) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        return [f"{where}: must be a text object of type {'/'.join(kinds)}"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}: text must be a non-empty string"]
    if len(text) > limit:
        return [f"{where}: must be less than {limit + 1} characters (got {len(text)})"]
    return []


def _element_problems(element: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    if element.get("type") == "button":
        problems += _text_problems(
            element.get("text"), f"{where}.text", BUTTON_TEXT, ("plain_text",)
        )
        value = element.get("value")
        if value is not None and len(str(value)) > BUTTON_VALUE:
            problems.append(f"{where}.value: must be less than {BUTTON_VALUE + 1} characters")
        if element.get("style") not in (None, "primary", "danger"):
            problems.append(f"{where}.style: must be primary or danger")
    if len(str(element.get("action_id", ""))) > 255:
        problems.append(f"{where}.action_id: too long")
    return problems


def block_problems(blocks: list[dict[str, Any]], limit: int) -> list[str]:
    """Block Kit rules signoff depends on; an empty list means the blocks are valid."""
    problems: list[str] = []
    if len(blocks) > limit:
        problems.append(f"blocks: must contain at most {limit} blocks (got {len(blocks)})")
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        kind = block.get("type")
        if len(str(block.get("block_id", ""))) > 255:
            problems.append(f"{where}.block_id: too long")
        if kind == "header":
            problems += _text_problems(
                block.get("text"), f"{where}.text", HEADER_TEXT, ("plain_text",)
            )
        elif kind == "section":
            if "text" in block:
                problems += _text_problems(
                    block["text"], f"{where}.text", SECTION_TEXT, ("plain_text", "mrkdwn")
                )
            fields = block.get("fields") or []
            if len(fields) > 10:
                problems.append(f"{where}.fields: at most 10 fields")
            for j, f in enumerate(fields):
                problems += _text_problems(
                    f, f"{where}.fields[{j}]", FIELD_TEXT, ("plain_text", "mrkdwn")
                )
            if "text" not in block and not fields:
                problems.append(f"{where}: needs text or fields")
            if "accessory" in block:
                problems += _element_problems(block["accessory"], f"{where}.accessory")
        elif kind == "context":
            elements = block.get("elements") or []
            if not elements or len(elements) > 10:
                problems.append(f"{where}.elements: 1 to 10 elements")
            for j, e in enumerate(elements):
                problems += _text_problems(
                    e, f"{where}.elements[{j}]", SECTION_TEXT, ("plain_text", "mrkdwn")
                )
        elif kind == "actions":
            elements = block.get("elements") or []
            if not elements or len(elements) > 25:
                problems.append(f"{where}.elements: 1 to 25 elements")
            for j, e in enumerate(elements):
                problems += _element_problems(e, f"{where}.elements[{j}]")
        elif kind == "input":
            problems += _text_problems(block.get("label"), f"{where}.label", 2000, ("plain_text",))
            if not isinstance(block.get("element"), dict):
                problems.append(f"{where}.element: required")
        elif kind != "divider":
            problems.append(f"{where}.type: unsupported block type {kind!r}")
    return problems


def message_problems(text: Any, blocks: list[dict[str, Any]]) -> list[str]:
    if not blocks and not text:
        return ["text or blocks: one is required"]
    problems = block_problems(blocks, MESSAGE_BLOCKS)
    if text is not None and len(str(text)) > 40_000:
        problems.append("text: must be at most 40000 characters")
    return problems


def view_problems(view: Any) -> list[str]:
    if not isinstance(view, dict) or view.get("type") != "modal":
        return ["view: must be a modal"]
    problems = _text_problems(view.get("title"), "view.title", MODAL_TITLE, ("plain_text",))
    for key in ("submit", "close"):
        if key in view:
            problems += _text_problems(view[key], f"view.{key}", MODAL_TITLE, ("plain_text",))
    if len(str(view.get("private_metadata", ""))) > PRIVATE_METADATA:
        problems.append("view.private_metadata: must be at most 3000 characters")
    if any(b.get("type") == "input" for b in view.get("blocks", [])) and "submit" not in view:
        problems.append("view.submit: required when the view has input blocks")
    return problems + block_problems(list(view.get("blocks") or []), MODAL_BLOCKS)
