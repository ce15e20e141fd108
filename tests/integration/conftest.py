"""Integration fixtures: a real store on a fresh SQLite file and on a real PostgreSQL server.

``store_url`` / ``store`` are parametrized over ``["sqlite", "postgres"]``. PostgreSQL is the
server named by ``SIGNOFF_TEST_PG_URL``, else a throwaway cluster started for the run
(``tests/pg_cluster.py``): each session creates its own uniquely named database (dropped at
the end) and each test gets a fresh schema in it, so tests never see each other's rows. When
PostgreSQL cannot be had the postgres tests fail, they are not skipped.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright
from psycopg import sql
from pytest_aiohttp import AiohttpClient

from adapters.main import build
from adapters.runtime import Runtime
from bench.serving import fresh_database, libpq, with_search_path
from bot.settings import load_settings
from bot.store import SqlStore
from tests.pg_cluster import admin_url
from tests.support import AppClient, write_home


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(libpq(url), autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """SQLAlchemy URL of the server's admin database (may create and drop databases)."""
    return admin_url()


@pytest.fixture(scope="session")
def pg_database(pg_admin_url: str) -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database for this test session."""
    with fresh_database(pg_admin_url, "signoff_test") as url:
        yield url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """SQLAlchemy URL whose connections work in a fresh, empty schema."""
    schema = f"t_{secrets.token_hex(6)}"
    with _admin(pg_database) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return with_search_path(pg_database, schema)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'signoff.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """URL of an empty database, once per backend."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url = request.getfixturevalue(name)
    assert isinstance(url, str)
    return url


@pytest_asyncio.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    """A migrated ``SqlStore`` on an empty database, once per backend."""
    opened = await SqlStore.open(store_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (Debian's /usr/bin/chromium) through Playwright."""
    from tests.integration.console_support import CHROMIUM, CHROMIUM_ARGS

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture
async def home(tmp_path: Path) -> Path:
    """The signoff.yaml of a fresh home on the suite's policy (a module may override it)."""
    return write_home(tmp_path)


@pytest_asyncio.fixture
async def runtime(home: Path) -> AsyncIterator[Runtime]:
    """The runtime built from ``home`` without chat adapters; drained and closed after."""
    rt = await build(load_settings(home), adapters=False)
    try:
        yield rt
    finally:
        await rt.gate.drain()
        await rt.store.close()


@pytest_asyncio.fixture
async def client(runtime: Runtime, aiohttp_client: AiohttpClient) -> AppClient:
    """An HTTP client of ``runtime``'s application on a test server."""
    return await aiohttp_client(runtime.app)
