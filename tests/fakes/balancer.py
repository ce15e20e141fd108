"""A tiny TCP load balancer for multi-replica tests: each new connection goes to the first
backend that accepts it (in order), so a replica that died is skipped, as a load balancer's
health checks would skip it. Bytes are copied both ways until either side closes."""

from __future__ import annotations

import asyncio
import contextlib


class Balancer:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.port = 0
        self.routed: list[int] = []  # backend port per accepted connection
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for host, port in self.backends:
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                continue
            self.routed.append(port)
            break
        else:
            writer.close()
            return
        one = asyncio.ensure_future(_pipe(reader, up_writer))
        two = asyncio.ensure_future(_pipe(up_reader, writer))
        for task in (one, two):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait({one, two}, return_when=asyncio.FIRST_COMPLETED)
        for task in (one, two):
            task.cancel()
        for w in (writer, up_writer):
            w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
