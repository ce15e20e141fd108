"""Server side of agent callbacks (SPEC §6 ``callback_url``).

When a request that named a ``callback_url`` becomes final, its JSON (exactly what
``GET /v1/requests/{id}`` answers) is POSTed there, signed per Standard Webhooks with the
asymmetric ``v1a`` scheme and the server's current Ed25519 key (see
``adapters.agent.webhooks`` for the headers and why). Each event has a stable
``webhook-id`` (``<request id>.<status>``) reused on every retry; a delivery is retried
with exponential back-off (bounded: ``DELAYS``) until the receiver answers 2xx (or 410
Gone), and an event already delivered by this process is not sent again.

A callback owed survives its process: the transaction that makes the request final records it
(``deliveries_owed``, held by that process for ``bot.domain.DELIVERY_HOLD``), the holder extends
its hold before each wait between attempts and forgets the record once the receiver took the
callback or it was given up. When a process stops with a callback undelivered (SIGKILL, a
crash, a shutdown whose grace ran out) its hold runs out and another process takes the
callback over (``take_over``: every process looks every ``SWEEP_EVERY`` seconds, one indexed
query) with the attempts left. Every take and hold is a compare-and-set, so one process at a
time delivers a callback; a receiver may still see an event twice (the holder died after
sending, before forgetting it), which the stable ``webhook-id`` lets it recognise.

A callback is a convenience: the decision itself is already recorded and attested, so a
failed delivery is logged and counted, never turned into anything else.

Destinations (SPEC §6): unless ``callbacks.allow_private_networks``, the server connects only
to public addresses, checked when the connection is made: a literal address in the URL before
connecting, a name by ``PublicOnlyResolver`` after DNS (every answer must be public, so a name
that resolves to ``127.0.0.1`` or ``169.254.169.254``, DNS rebinding included, is refused).
A refused destination is logged and counted (``signoff_callbacks_refused``), never POSTed to
and not retried. Redirects are not followed and proxies from the environment are not used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import Counter

from adapters.agent.webhooks import sign
from adapters.runtime import Mounted, Wiring, repeat
from bot.addresses import PrivateAddress, check_public
from bot.api.requests import request_json
from bot.domain import Delivery, OwedDelivery, Request
from bot.errors import StoreError
from bot.service import Gate

log = logging.getLogger(__name__)

#: waits between attempts: 7 attempts over about 2 minutes
DELAYS: tuple[float, ...] = (1, 2, 4, 8, 16, 32)
ATTEMPT_TIMEOUT = 10.0
_REMEMBERED = 10_000
#: how often each process looks for callbacks whose holder stopped (``sweep_every``), and
#: how many it takes over at a time
SWEEP_EVERY = 5.0
SWEEP_BATCH = 100
#: a hold covers the wait and the attempt after it, plus this much
HOLD_MARGIN = 5.0


class RefusedDestination(aiohttp.ClientError):
    """The callback's host is not a public address (raised before any byte is sent)."""


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver, refusing a name when any of its answers is not public."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            try:
                check_public(answer["host"])
            except (PrivateAddress, ValueError) as exc:
                raise RefusedDestination(f"{host} resolves to a non-public address") from exc
        return answers

    async def close(self) -> None:
        await self._inner.close()


def check_literal_host(url: str) -> None:
    """aiohttp does not resolve literal addresses: check them here. Raises
    ``RefusedDestination``."""
    host = urlsplit(url).hostname or ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return
    try:
        check_public(ip)
    except PrivateAddress as exc:
        raise RefusedDestination(exc.message) from None


def webhook_id(request: Request) -> str:
    """Stable per event: one request becomes final once, so id + status names the event."""
    return f"{request.id}.{request.status.value}"


class CallbackSender:
    """Delivers final states to ``callback_url``s. ``sleep`` is injectable for tests."""

    def __init__(
        self,
        gate: Gate,
        *,
        delays: Sequence[float] = DELAYS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeout: float = ATTEMPT_TIMEOUT,
        allow_private_networks: bool = False,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.gate = gate
        self.allow_private_networks = allow_private_networks
        self.resolver = resolver
        self.refused = Counter(
            "signoff_callbacks_refused",
            "Callbacks not sent: the destination is not a public address",
            registry=gate.metrics.registry,
        )
        self.outcomes = Counter(
            "signoff_callbacks",
            "Callbacks by what became of them: delivered, given_up (every attempt failed), "
            "taken_over (from a process that stopped before it was done)",
            ["outcome"],
            registry=gate.metrics.registry,
        )
        self.delays = tuple(delays)
        self.sweep_every = SWEEP_EVERY
        self.sleep = sleep
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._inflight: set[str] = set()

    def on_final(self, request: Request) -> Awaitable[bool] | None:
        """A final listener (``bot.fanout``): the delivery to run, if the agent asked for one."""
        return self.deliver(request) if request.callback_url else None

    async def body(self, request: Request) -> bytes:
        received = await self.gate.received(request)
        return json.dumps(request_json(request, received), separators=(",", ":")).encode()

    async def deliver(self, request: Request, owed: OwedDelivery | None = None) -> bool:
        """POST the final state with retries; True once the receiver accepted it.

        ``owed``: this process's hold on the store's record of the callback, with the
        attempts already made; None for the hold the commit that made the request final gave
        this process. Returns False without sending when another process holds it now."""
        if not request.callback_url:
            return False
        event = webhook_id(request)
        if event in self._delivered:
            if owed is not None:  # delivered here, but the record was not forgotten
                await self._settle(request.id)
            return True
        if event in self._inflight:
            return True  # deduplicated: this event is being delivered
        self._inflight.add(event)
        held: OwedDelivery | None = owed or OwedDelivery(
            request.id, Delivery.CALLBACK, attempts=0, version=0
        )
        try:
            body = await self.body(request)
            while held is not None:
                if held.attempts > len(self.delays):
                    log.warning(
                        "callback for request %s not delivered after %d attempts",
                        request.id,
                        held.attempts,
                    )
                    self.outcomes.labels("given_up").inc()
                    await self._settle(request.id)
                    return False
                try:
                    delivered = await self._attempt(request.callback_url, event, body, request.id)
                except RefusedDestination as exc:
                    self.refused.inc()
                    log.warning(
                        "callback for request %s refused: %s (callbacks.allow_private_networks "
                        "is off); nothing was sent",
                        request.id,
                        exc,
                    )
                    await self._settle(request.id)
                    return False
                if delivered:
                    self._remember(event)
                    self.outcomes.labels("delivered").inc()
                    await self._settle(request.id)
                    return True
                made = held.attempts + 1
                if made > len(self.delays):
                    held = replace(held, attempts=made)
                    continue
                delay = self.delays[made - 1]
                held = await self._hold(held, delay + self.timeout + HOLD_MARGIN, made)
                if held is not None:
                    await self.sleep(delay)
                    # still ours after the wait? (a process paused past its hold was taken
                    # over: it must not send again)
                    held = await self._hold(held, self.timeout + HOLD_MARGIN, made)
            log.info("callback for request %s: another process took it over", request.id)
            return False
        finally:
            self._inflight.discard(event)

    async def take_over(self) -> int:
        """Deliver, in the background, the callbacks owed whose holder's time ran out (its
        process stopped before it was done). One pass; returns how many it took."""
        taken = 0
        hold = timedelta(seconds=self.timeout + HOLD_MARGIN)
        async for held, request in self.gate.take_due(Delivery.CALLBACK, hold, limit=SWEEP_BATCH):
            if request is None or not request.callback_url or not request.status.final:
                await self._settle(held.request_id)
                continue
            log.info(
                "callback for request %s taken over after %d attempts elsewhere",
                request.id,
                held.attempts,
            )
            self.outcomes.labels("taken_over").inc()
            self.gate.fanout.spawn(self.deliver(request, held), f"callback for {request.id}")
            taken += 1
        return taken

    async def run(self) -> None:
        """Take over stopped processes' callbacks every ``SWEEP_EVERY`` seconds (every
        process looks; the compare-and-set of ``take_over`` gives each callback to one)."""
        await repeat(self.take_over, self.sweep_every, "looking for callbacks owed")

    async def _hold(self, held: OwedDelivery, seconds: float, made: int) -> OwedDelivery | None:
        """Hold the callback ``seconds`` from now with ``made`` attempts made. None when
        another process took it over meanwhile. A store that cannot be reached does not stop
        the retries here: the hold is kept as it was."""
        try:
            return await self.gate.hold_delivery(held, timedelta(seconds=seconds), attempts=made)
        except StoreError as exc:
            log.warning("callback for request %s: hold not recorded: %s", held.request_id, exc)
            return replace(held, attempts=made)

    async def _settle(self, request_id: str) -> None:
        try:
            await self.gate.settle_delivery(request_id, Delivery.CALLBACK)
        except StoreError as exc:
            log.warning(
                "callback for request %s: done, but not recorded (%s); another process may "
                "send it again",
                request_id,
                exc,
            )

    async def _attempt(self, url: str, event: str, body: bytes, request_id: str) -> bool:
        timestamp = int(self.gate.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            **sign(self.gate.signer, event, timestamp, body),
        }
        if not self.allow_private_networks:
            check_literal_host(url)
        try:
            async with self._http().post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                if 200 <= resp.status < 300 or resp.status == 410:
                    return True
                log.info("callback for request %s answered %s", request_id, resp.status)
        except RefusedDestination:
            raise  # from the resolver, before connecting
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("callback for request %s failed: %s", request_id, type(exc).__name__)
        return False

    def _remember(self, event: str) -> None:
        self._delivered[event] = None
        while len(self._delivered) > _REMEMBERED:
            self._delivered.popitem(last=False)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = (
                aiohttp.TCPConnector()
                if self.allow_private_networks
                else aiohttp.TCPConnector(resolver=self.resolver or PublicOnlyResolver())
            )
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def close(self, _app: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def mount(wiring: Wiring) -> Mounted[CallbackSender]:
    """The callback sender, as a final listener of the gate."""
    sender = CallbackSender(
        wiring.gate,
        allow_private_networks=wiring.settings.callbacks.allow_private_networks,
    )
    return Mounted(
        sender,
        final_listeners=(sender.on_final,),
        jobs=(sender.run,),
        on_cleanup=(sender.close,),
    )


__all__ = [
    "DELAYS",
    "SWEEP_EVERY",
    "CallbackSender",
    "PublicOnlyResolver",
    "RefusedDestination",
    "check_literal_host",
    "mount",
    "webhook_id",
]
