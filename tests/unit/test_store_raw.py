"""``bot.store.raw``: the hot-path statements store values exactly as SQLAlchemy Core would."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, DateTime, MetaData, Table, create_engine, insert

from bot.store.raw import RawStatement

TABLE = Table("t", MetaData(), Column("at", DateTime(timezone=True)))
ENGINE = create_engine("sqlite://")
CORE = DateTime(timezone=True).dialect_impl(ENGINE.dialect).bind_processor(ENGINE.dialect)
RAW = RawStatement(insert(TABLE))._for(ENGINE.dialect)


@settings(max_examples=500)
@given(
    st.datetimes(
        timezones=st.none()
        | st.just(UTC)
        | st.builds(timezone, st.sampled_from([timedelta(hours=h) for h in range(-12, 15)]))
    )
)
def test_datetime_text_equals_cores(moment: datetime) -> None:
    assert RAW.row({"at": moment}) == [CORE(moment)]


def test_none_and_plain_dates_fall_back_to_core() -> None:
    assert RAW.row({"at": None}) == [None]
    assert RAW.row({"at": date(2026, 11, 21)}) == [CORE(date(2026, 11, 21))]
