"""``RawQuery`` (the prebuilt reads run on the psycopg cursor on PostgreSQL, and by
``Database.fetch`` on psycopg's async driver) gives the rows SQLAlchemy gives, column for
column: JSON of every shape (nested, ``null``, unicode), bytes, timestamps with their time
zone, NULLs; and a database error still comes out as the store's ``StoreError``.
``RawStatement`` (the write path's statements, on the psycopg cursor on PostgreSQL) stores
the rows SQLAlchemy stores."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, create_engine, delete, exc, insert, select, update

from bot.domain import Agent, Event, Status
from bot.errors import StoreError
from bot.store import SqlStore, mapping
from bot.store.raw import RawQuery, RawStatement
from bot.store.tables import HEAD_ID, LOG_ENTRIES, LOG_HEAD, REQUESTS
from tests.factories import STORE_T0 as T0
from tests.factories import make_request, widest_request

ARGUMENTS = {"amount": 25000, "to": "acct-ü", "memo": None, "lines": [{"n": 1.5}, [], {}]}


async def test_rows_match_sqlalchemy_column_for_column(store: SqlStore) -> None:
    await store.add_agent(Agent("billing-agent", "h" * 64, T0))
    request = make_request(
        "req-raw",
        arguments=ARGUMENTS,
        context={"requested_by": "ana@example.com", "trace": {"id": "ab"}},
        justification="refund ✓ 8812",
        status=Status.APPROVED,
        decided_at=T0 + timedelta(seconds=3),
        reason="ok",
        idempotency_key="key-1",
    )
    await store.insert_request(request, b'{"raw":1}', Event.AUTO_ALLOWED)
    requests = select(REQUESTS).where(REQUESTS.c.id == bindparam("id"))
    entries = select(LOG_ENTRIES).where(LOG_ENTRIES.c.request_id == bindparam("id"))
    values = {"id": request.id}

    def both(conn: Connection) -> tuple[Any, ...]:
        return (
            RawQuery(requests).all(conn, values),
            conn.execute(requests, values).all(),
            RawQuery(entries).all(conn, values),
            conn.execute(entries, values).all(),
            RawQuery(requests).all(conn, {"id": "no-such"}),
        )

    raw, core, raw_entries, core_entries, missing = await store.read(both)
    # the same three reads together, on the event loop on PostgreSQL (one round trip)
    fetched, fetched_entries, fetched_missing = await store.fetch(
        (RawQuery(requests), values), (RawQuery(entries), values), (RawQuery(requests), {"id": "x"})
    )
    assert len(core) == 1 and missing == [] and fetched_missing == []
    for rows in (raw, fetched):
        assert [tuple(r) for r in rows] == [tuple(r) for r in core]
        assert rows[0]._fields == tuple(core[0]._fields)
        assert mapping.to_request(rows[0]) == mapping.to_request(core[0])
    assert mapping.to_request(core[0]) == await store.get_request(request.id)
    for got in (raw_entries, fetched_entries):
        assert [tuple(r) for r in got] == [tuple(r) for r in core_entries]
        assert isinstance(got[0].envelope, bytes)


@pytest.mark.postgres
async def test_a_database_error_is_a_store_error(pg_url: str) -> None:
    store = await SqlStore.open(pg_url)
    try:
        query = RawQuery(select(REQUESTS).where(REQUESTS.c.id == bindparam("id")))
        assert await store.read(lambda conn: query.all(conn, {"id": "x"})) == []
        assert await store.fetch((query, {"id": "x"})) == [[]]
        await store.read(lambda conn: conn.exec_driver_sql("DROP TABLE requests CASCADE"))
        with pytest.raises(StoreError, match=r"unavailable.*requests"):
            await store.read(lambda conn: query.all(conn, {"id": "x"}))
        with pytest.raises(StoreError, match=r"unavailable.*requests"):
            await store.fetch((query, {"id": "x"}))
        with pytest.raises(StoreError, match=r"unavailable.*requests"):  # the rest are not run
            await store.fetch((query, {"id": "x"}), (query, {"id": "y"}))
    finally:
        await store.close()


@pytest.mark.postgres
def test_raw_writes_store_the_rows_core_stores_on_postgresql(pg_url: str) -> None:
    engine = create_engine(pg_url)
    REQUESTS.metadata.create_all(engine)
    rows = [mapping.from_request(widest_request()), mapping.from_request(make_request("req-b"))]
    raw = RawStatement(insert(REQUESTS))

    def stored(write: Any) -> list[tuple[Any, ...]]:
        with engine.begin() as conn:
            conn.execute(delete(REQUESTS))
            write(conn)
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(REQUESTS).order_by(REQUESTS.c.id))]

    try:
        by_core = stored(lambda conn: conn.execute(insert(REQUESTS), rows))
        assert stored(lambda conn: raw.insert_many(conn, rows)) == by_core  # executemany
        assert stored(lambda conn: raw.insert_many(conn, rows[:1])) == by_core[1:]  # one row
        assert len(by_core) == 2 and by_core[1][0] == "req-full"
        # a duplicate is SQLAlchemy's IntegrityError, as from Core (the store's Conflict)
        with pytest.raises(exc.IntegrityError), engine.begin() as conn:
            raw.insert_many(conn, [*rows, rows[0]])
        # the log head's size update: its id fixed in the statement, the size a parameter
        size = RawStatement(
            update(LOG_HEAD).where(LOG_HEAD.c.id == HEAD_ID).values(size=bindparam("size"))
        )
        with engine.begin() as conn:
            conn.execute(insert(LOG_HEAD), {"id": HEAD_ID, "size": 0})
            assert size.execute(conn, {"size": 5}) == 1
        with engine.connect() as conn:
            assert conn.execute(select(LOG_HEAD)).all() == [(HEAD_ID, 5)]
    finally:
        engine.dispose()
