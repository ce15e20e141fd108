"""``bot.store.raw``: the hot-path statements store values exactly as SQLAlchemy Core would."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    MetaData,
    Table,
    bindparam,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.types import TypeEngine

from bot.store.engine import make_engine, parse_url
from bot.store.mapping import from_request
from bot.store.raw import RawStatement
from bot.store.tables import HEAD_ID, LOG_ENTRIES, LOG_HEAD, REQUESTS
from tests.factories import make_request, widest_request

TABLE = Table("t", MetaData(), Column("at", DateTime(timezone=True)), Column("doc", JSON))
ENGINE = create_engine("sqlite://")


def core_processor(column_type: TypeEngine[Any]) -> Callable[[Any], Any]:
    """How SQLAlchemy Core turns a value of ``column_type`` into its SQLite bind value."""
    processor = column_type.dialect_impl(ENGINE.dialect).bind_processor(ENGINE.dialect)
    assert processor is not None
    return processor


CORE = core_processor(DateTime(timezone=True))
CORE_JSON = core_processor(JSON())
RAW = RawStatement(insert(TABLE))._for(ENGINE.dialect)
NOW = datetime(2026, 11, 21, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: json.dumps writes them, so must this
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500)
@given(
    st.datetimes(
        timezones=st.none()
        | st.just(UTC)
        | st.builds(timezone, st.sampled_from([timedelta(hours=h) for h in range(-12, 15)]))
    )
)
def test_datetime_text_equals_cores(moment: datetime) -> None:
    assert RAW.row({"at": moment, "doc": None}) == [CORE(moment), CORE_JSON(None)]


def test_the_same_instant_in_other_zones_keeps_each_zones_wall_time() -> None:
    # the last text is reused only for the same wall time: an equal instant in another zone
    # (or naive) is written with its own wall time, as Core writes it
    moments = [NOW, NOW, NOW.astimezone(timezone(timedelta(hours=2))), NOW.replace(tzinfo=None)]
    moments += [NOW.astimezone(timezone(timedelta(hours=-5))), NOW, NOW + timedelta(microseconds=1)]
    for moment in moments:
        assert RAW.row({"at": moment, "doc": None})[0] == CORE(moment), moment


@settings(max_examples=500)
@given(st.dictionaries(st.text(), json_values) | st.lists(json_values))
def test_json_text_equals_cores(document: object) -> None:
    assert RAW.row({"at": NOW, "doc": document})[1] == CORE_JSON(document)


@given(st.lists(json_values).map(tuple) | st.none())
def test_tuples_and_none_are_written_as_core_writes_them(document: object) -> None:
    # tuples (request labels) and None (optional JSON columns) are written on every request
    assert RAW.row({"at": NOW, "doc": document})[1] == CORE_JSON(document)


def test_json_that_is_not_serialisable_fails_as_in_core() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        RAW.row({"at": NOW, "doc": {"x": object()}})


def test_none_and_plain_dates_fall_back_to_core() -> None:
    assert RAW.row({"at": None, "doc": "text"}) == [None, CORE_JSON("text")]
    assert RAW.row({"at": date(2026, 11, 21), "doc": 3})[0] == CORE(date(2026, 11, 21))


def _stored_rows(table: Table, write: Callable[[Connection], object]) -> list[tuple[Any, ...]]:
    """The rows of ``table`` as SQLite holds them (no result processors) after ``write``."""
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine, tables=[table])
    with engine.begin() as conn:
        write(conn)
    with engine.connect() as conn:
        return list(conn.exec_driver_sql(str(select(table).compile(engine))).all())


def test_a_whole_request_row_is_stored_as_cores() -> None:
    # every column of the widest row, the JSON and time ones set and unset
    full = widest_request(at=NOW)
    bare = make_request("req-bare")
    rows = [from_request(full), from_request(bare)]
    raw = RawStatement(insert(REQUESTS))
    by_raw = _stored_rows(REQUESTS, lambda conn: raw.insert_many(conn, rows))
    by_core = _stored_rows(REQUESTS, lambda conn: conn.execute(insert(REQUESTS), rows))
    assert by_raw == by_core
    assert len(by_raw) == 2


def test_a_value_fixed_in_the_statement_is_used_when_the_row_has_none() -> None:
    # the log head's size update: its id is part of the statement, the size a parameter
    statement = RawStatement(
        update(LOG_HEAD).where(LOG_HEAD.c.id == HEAD_ID).values(size=bindparam("size"))
    )

    def write(conn: Connection) -> None:
        conn.execute(insert(LOG_HEAD), {"id": HEAD_ID, "size": 0})
        assert statement.execute(conn, {"size": 5}) == 1

    assert _stored_rows(LOG_HEAD, write) == [(HEAD_ID, 5)]


def test_a_log_entry_is_stored_as_cores() -> None:
    # binary columns go to SQLite as the bytes themselves, not in SQLAlchemy's memoryview
    entry = {
        "idx": 0,
        "request_id": "req-1",
        "event": "auto_allowed",
        "envelope": b'{"payload":"e30="}',
        "leaf_hash": bytes(range(32)),
        "created_at": NOW,
    }
    raw = RawStatement(insert(LOG_ENTRIES))
    by_raw = _stored_rows(LOG_ENTRIES, lambda conn: raw.insert_many(conn, [entry]))
    by_core = _stored_rows(LOG_ENTRIES, lambda conn: conn.execute(insert(LOG_ENTRIES), [entry]))
    assert by_raw == by_core
    assert bytes(range(32)) in by_raw[0]


def test_sqlite_binds_none_bytes_and_views_as_it_did_before_the_registered_adapters() -> None:
    # make_engine registers an adapter for each (so sqlite3 skips its failed adapter search);
    # what reaches SQLite must not change
    make_engine(parse_url("sqlite://"), pool_size=1).dispose()
    for kind in (type(None), bytes, memoryview):
        assert (kind, sqlite3.PrepareProtocol) in sqlite3.adapters
    db = sqlite3.connect(":memory:")
    row = db.execute(
        "SELECT typeof(?), typeof(?), ?, typeof(?), ?, typeof(?), ?",
        (None, b"\x00ab", b"\x00ab", memoryview(b"cd"), memoryview(b"cd"), 7, 7),
    ).fetchone()
    assert row == ("null", "blob", b"\x00ab", "blob", b"cd", "integer", 7)
