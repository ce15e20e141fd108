"""The Slack Web API client signoff uses: slack_sdk's ``AsyncWebClient`` with retries.

Retries use slack_sdk's own handlers, all sleeping with ``asyncio.sleep`` (never blocking the
event loop): ``429`` waits for ``Retry-After``
(https://api.slack.com/apis/rate-limits#headers); 5xx, connection resets and timeouts back off
exponentially. One pooled ``aiohttp.ClientSession`` is opened when the server starts and closed
on shutdown, so calls reuse connections.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import ClientOSError, ServerConnectionError, ServerDisconnectedError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.interval_calculator import RetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

#: transport failures worth another attempt (TimeoutError covers ClientTimeout expiry)
RETRYABLE_ERRORS: list[type[Exception]] = [
    ServerConnectionError,
    ServerDisconnectedError,
    ClientOSError,
    TimeoutError,
]


class AnyServerErrorRetryHandler(AsyncServerErrorRetryHandler):
    """slack_sdk's server-error handler, widened from 500/503 to every 5xx answer."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and response.status_code >= 500


def retry_handlers(
    retries: int = 3, interval: RetryIntervalCalculator | None = None
) -> list[AsyncRetryHandler]:
    interval = interval or BackoffRetryIntervalCalculator(backoff_factor=0.5)
    return [
        AsyncRateLimitErrorRetryHandler(max_retry_count=retries),
        AnyServerErrorRetryHandler(max_retry_count=retries, interval_calculator=interval),
        AsyncConnectionErrorRetryHandler(
            max_retry_count=retries, interval_calculator=interval, error_types=RETRYABLE_ERRORS
        ),
    ]


def make_client(
    token: str,
    base_url: str,
    *,
    timeout: int = 10,
    retries: int = 3,
    interval: RetryIntervalCalculator | None = None,
) -> AsyncWebClient:
    """An ``AsyncWebClient`` for the bot token at ``base_url`` (tests point it at a fake)."""
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=timeout,
        retry_handlers=retry_handlers(retries, interval),
    )


class PooledSession:
    """Gives ``client`` one shared ``aiohttp.ClientSession`` while the server runs."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def open(self, *_: Any) -> None:
        if self.client.session is None or self.client.session.closed:
            self.client.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.client.timeout)
            )

    async def close(self, *_: Any) -> None:
        session = self.client.session
        self.client.session = None
        if session is not None and not session.closed:
            await session.close()
