"""SqlStore against a real SQLite file and a real PostgreSQL server (every test runs on both)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
import pytest_asyncio

from bot.domain import (
    Agent,
    Approver,
    Change,
    Checkpoint,
    EscalationStep,
    Event,
    Outcome,
    Platform,
    PolicyRef,
    Post,
    Request,
    Requirement,
    Status,
    Tier,
    ToolCall,
    Verdict,
    Vote,
)
from bot.errors import Conflict, EvidenceError, NotFound, StoreError
from bot.evidence import merkle
from bot.store import SqlStore, migrate
from bot.store.engine import make_engine, parse_url
from bot.store.migrate import differences, head_revision
from tests import factories
from tests.factories import STORE_T0, advance, envelope
from tests.factories import numbered_request as make_request
from tests.support import terminate_and_wait

T0 = STORE_T0
ALICE = Approver(Platform.SLACK, "T1", "U1", "Alice Ä", "alice@example.com")
BOB = Approver(Platform.TEAMS, "tenant-2", "oid-2", "Bob", None, "console_login")

ARGUMENTS = {
    "zeta": 1,
    "alpha": "ünïcødé ✓ 🚀 \u0000 <!channel>",
    "nested": {"list": [1, 2.5, None, True, {"deep": ["x"]}], "empty": {}},
    "big": 2**63 + 1,
    "bigger": 10**30,
    "negative": -(2**53) - 1,
    "floats": [0.1, 1e-300, 1.7976931348623157e308, -0.0, 123456789.123456789],
}


def full_request() -> Request:
    """A request with every field set to a non-default value."""
    plus2 = timezone(timedelta(hours=2))
    return factories.make_request(
        "req-7",
        agent_id="agent-1",
        arguments_sha256="a" * 64,
        call_sha256="c" * 64,
        call=ToolCall(
            "db.drop",
            ARGUMENTS,
            justification="because ✓",
            context={"thread": ["m1", "m2"], "score": 0.75},
        ),
        tier=Tier.NOTIFY,
        status=Status.APPROVED,
        policy=PolicyRef("sha256:def", None, None),
        requirement=Requirement(groups=("dba", "sre"), quorum=2, all_of=("security",)),
        created_at=datetime(2026, 1, 2, 5, 4, 5, 123456, tzinfo=plus2),  # = T0 + 0 in UTC
        artifact_digest="sha256:model",
        escalation=(
            EscalationStep(timedelta(minutes=5, microseconds=7), remind=True),
            EscalationStep(timedelta(hours=1), to="oncall", page=True),
            EscalationStep(timedelta(days=1), deny=True),
        ),
        deadline=T0 + timedelta(hours=2),
        decided_at=T0 + timedelta(minutes=3),
        reason="looks fine",
        callback_url="https://agent.example/cb",
        idempotency_key="key-7",
        body_sha256="b" * 64,
        extra_groups=("oncall",),
        steps_done=2,
        grant="eyJ.grant.sig",
        grant_expires_at=T0 + timedelta(minutes=10),
        grant_used_at=T0 + timedelta(minutes=4),
        outcome=Outcome.SUCCEEDED,
        version=3,
    )


def naive_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH computed directly from the leaf hashes."""
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


def assert_utc(value: datetime | None) -> None:
    assert value is not None and value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)


@pytest_asyncio.fixture
async def second(store_url: str, store: SqlStore) -> AsyncIterator[SqlStore]:
    """Another store on the same database, as a second process would have."""
    other = await SqlStore.open(store_url)
    try:
        yield other
    finally:
        await other.close()


async def test_ping_and_connection_settings(store: SqlStore) -> None:
    await store.ping()
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragmas == {
            "journal_mode": "wal",
            "synchronous": 1,  # NORMAL
            "busy_timeout": 5000,
            "foreign_keys": 1,
        }


async def test_agent_round_trip(store: SqlStore) -> None:
    agent = Agent("agent-1", "f" * 64, T0, "sha256:build", {"team": "pay", "ü": "✓"})
    plain = Agent("agent-0", "0" * 64, T0 - timedelta(days=1))
    await store.add_agent(agent)
    await store.add_agent(plain)

    assert await store.get_agent("agent-1") == agent
    assert await store.agent_by_token_hash("0" * 64) == plain
    assert await store.get_agent("nobody") is None
    assert await store.agent_by_token_hash("nothing") is None
    assert await store.list_agents() == [plain, agent]
    assert_utc((await store.list_agents())[0].created_at)

    suspended = await store.set_agent_suspended("agent-1", True)
    assert suspended == dataclasses.replace(agent, suspended=True)
    assert await store.get_agent("agent-1") == suspended
    with pytest.raises(Conflict):
        await store.add_agent(agent)
    with pytest.raises(NotFound):
        await store.set_agent_suspended("nobody", True)


async def test_request_round_trip_keeps_every_field(store: SqlStore) -> None:
    request = full_request()
    stored = await store.insert_request(request)
    assert stored == request

    back = await store.get_request(request.id)
    assert back == request
    assert back is not None
    # JSON comes back exactly: key order, big integers, float bits, unicode
    assert list(back.call.arguments) == list(ARGUMENTS)
    assert back.call.arguments["big"] == 2**63 + 1
    assert back.call.arguments["bigger"] == 10**30
    assert [math.copysign(1, f) for f in back.call.arguments["floats"]][3] == -1.0
    assert back.call.arguments["floats"] == ARGUMENTS["floats"]
    assert back.escalation[0].after == timedelta(minutes=5, microseconds=7)
    for value in (
        back.created_at,
        back.deadline,
        back.decided_at,
        back.grant_expires_at,
        back.grant_used_at,
    ):
        assert_utc(value)
    assert back.created_at == T0
    assert await store.request_by_idempotency_key("agent-1", "key-7") == request
    assert await store.request_by_idempotency_key("agent-2", "key-7") is None

    minimal = make_request(8)
    await store.insert_request(minimal)
    assert await store.get_request("req-8") == minimal
    assert await store.get_request("nope") is None


async def test_insert_with_attestation_sets_last_log_index(store: SqlStore) -> None:
    first = await store.insert_request(make_request(1), envelope(1), Event.NOTIFIED)
    second = await store.insert_request(make_request(2), envelope(2), Event.AUTO_ALLOWED)
    assert (first.last_log_index, second.last_log_index) == (0, 1)
    assert await store.get_request("req-2") == second
    assert await store.log_size() == 2
    entries = await store.log_entries(0, 2)
    assert [(e.index, e.request_id, e.event, e.envelope) for e in entries] == [
        (0, "req-1", Event.NOTIFIED, envelope(1)),
        (1, "req-2", Event.AUTO_ALLOWED, envelope(2)),
    ]
    assert entries[1].leaf_hash == merkle.leaf_hash(envelope(2))
    assert_utc(entries[0].created_at)
    with pytest.raises(ValueError, match="event"):
        await store.insert_request(make_request(3), envelope(3))
    assert await store.get_request("req-3") is None


async def test_idempotency_key_conflict(store: SqlStore) -> None:
    await store.insert_request(make_request(1, idempotency_key="k"), envelope(1), Event.NOTIFIED)
    with pytest.raises(Conflict):
        await store.insert_request(
            make_request(2, idempotency_key="k"), envelope(2), Event.NOTIFIED
        )
    with pytest.raises(Conflict):  # same id
        await store.insert_request(make_request(1))
    # the failed inserts appended nothing
    assert await store.log_size() == 1
    assert await store.get_request("req-2") is None
    # another agent may use the same key; requests without a key never clash
    await store.insert_request(make_request(3, agent_id="agent-2", idempotency_key="k"))
    await store.insert_request(make_request(4))
    await store.insert_request(make_request(5))


async def test_commit_applies_change_vote_and_attestation(store: SqlStore) -> None:
    request = await store.insert_request(make_request(1), envelope(0), Event.NOTIFIED)
    vote = Vote(request.id, ALICE, Verdict.APPROVE, "finance", "ok ✓", T0 + timedelta(minutes=1))
    change = advance(request, status=Status.APPROVED, decided_at=vote.at, reason="ok")
    change = dataclasses.replace(change, vote=vote, attestation=envelope(1), event=Event.APPROVED)

    committed = await store.commit(change)
    assert committed == dataclasses.replace(change.after, last_log_index=1)
    assert await store.get_request(request.id) == committed
    assert await store.votes(request.id) == [vote]
    assert [e.index for e in await store.log_entries_for(request.id)] == [0, 1]

    # a change without evidence keeps the caller's last_log_index
    quiet = await store.commit(advance(committed, steps_done=1))
    assert quiet.last_log_index == 1
    assert (await store.get_request(request.id)) == quiet
    assert await store.log_size() == 2


async def test_duplicate_vote_conflicts_and_changes_nothing(store: SqlStore) -> None:
    request = await store.insert_request(
        make_request(1, requirement=Requirement(groups=("finance",), quorum=2))
    )
    first = Vote(request.id, ALICE, Verdict.APPROVE, "finance", "", T0)
    after_first = await store.commit(
        dataclasses.replace(advance(request), vote=first, attestation=b"v1", event=Event.APPROVED)
    )
    again = Vote(request.id, ALICE, Verdict.DENY, "finance", "changed my mind", T0)
    with pytest.raises(Conflict, match="already voted"):
        await store.commit(
            dataclasses.replace(
                advance(after_first, status=Status.DENIED),
                vote=again,
                attestation=b"v2",
                event=Event.DENIED,
            )
        )
    assert await store.get_request(request.id) == after_first
    assert await store.votes(request.id) == [first]
    assert await store.log_size() == 1

    other = Vote(request.id, BOB, Verdict.APPROVE, "finance", "", T0 + timedelta(seconds=1))
    await store.commit(dataclasses.replace(advance(after_first), vote=other))
    assert await store.votes(request.id) == [first, other]


async def test_a_duplicate_vote_in_a_group_is_refused_alone(store: SqlStore) -> None:
    # the group's votes are inserted together at its end; the duplicate's broken constraint
    # sends the group through again op by op, so only that commit fails
    quorum = Requirement(groups=("finance",), quorum=2)
    one = await store.insert_request(make_request(1, requirement=quorum))
    two = await store.insert_request(make_request(2, requirement=quorum))
    voted = await store.commit(
        dataclasses.replace(
            advance(one), vote=Vote(one.id, ALICE, Verdict.APPROVE, "finance", "", T0)
        )
    )
    fresh = Vote(two.id, ALICE, Verdict.APPROVE, "finance", "", T0)
    again = Vote(one.id, ALICE, Verdict.DENY, "finance", "", T0)
    results = await asyncio.gather(
        store.commit(
            dataclasses.replace(advance(two), vote=fresh, attestation=b"a", event=Event.APPROVED)
        ),
        store.commit(
            dataclasses.replace(advance(voted), vote=again, attestation=b"b", event=Event.DENIED)
        ),
        return_exceptions=True,
    )
    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], Conflict) and "already voted" in str(results[1])
    assert await store.votes(two.id) == [fresh]
    assert await store.get_request(one.id) == voted
    assert await store.log_size() == 1


async def test_stale_or_malformed_commit_appends_nothing(store: SqlStore) -> None:
    request = await store.insert_request(make_request(1), envelope(0), Event.NOTIFIED)
    current = await store.commit(advance(request, steps_done=1))

    stale = dataclasses.replace(
        advance(request, status=Status.APPROVED), attestation=envelope(1), event=Event.APPROVED
    )
    with pytest.raises(Conflict, match="changed concurrently"):
        await store.commit(stale)
    skipping = Change(request, dataclasses.replace(current, version=current.version + 2))
    with pytest.raises(Conflict, match="version"):
        await store.commit(skipping)
    with pytest.raises(Conflict):
        await store.commit(Change(request, dataclasses.replace(current, id="other")))

    assert await store.log_size() == 1
    assert await store.get_request(request.id) == current


async def test_racing_commits_exactly_one_wins(store: SqlStore, second: SqlStore) -> None:
    for round_ in range(8):  # several rounds make a true interleaving near certain
        request = await store.insert_request(make_request(round_))
        size = await store.log_size()
        approve = dataclasses.replace(
            advance(request, status=Status.APPROVED), attestation=b"yes", event=Event.APPROVED
        )
        deny = dataclasses.replace(
            advance(request, status=Status.DENIED), attestation=b"no", event=Event.DENIED
        )
        results = await asyncio.gather(
            store.commit(approve), second.commit(deny), return_exceptions=True
        )
        winners = [r for r in results if isinstance(r, Request)]
        losers = [r for r in results if isinstance(r, Conflict)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert winners[0].last_log_index == size
        assert await store.get_request(request.id) == winners[0]
        assert await store.log_size() == size + 1
        assert [e.event for e in await store.log_entries_for(request.id)] == [
            Event.APPROVED if winners[0].status is Status.APPROVED else Event.DENIED
        ]


async def test_concurrent_appends_make_a_contiguous_verifiable_log(store_url: str) -> None:
    """Four stores (as four processes would) append 50 requests each at the same time."""
    stores = [await SqlStore.open(store_url) for _ in range(4)]
    try:

        async def writer(number: int, one: SqlStore) -> list[int]:
            indices = []
            for i in range(50):
                n = number * 1000 + i
                stored = await one.insert_request(make_request(n), envelope(n), Event.NOTIFIED)
                assert stored.last_log_index is not None
                indices.append(stored.last_log_index)
            return indices

        per_writer = await asyncio.gather(*(writer(k, s) for k, s in enumerate(stores)))
        store = stores[0]
        assert sorted(i for indices in per_writer for i in indices) == list(range(200))
        assert await store.log_size() == 200

        entries = await store.log_entries(0, 200)
        assert [e.index for e in entries] == list(range(200))
        leaves = [e.leaf_hash for e in entries]
        assert leaves == [merkle.leaf_hash(e.envelope) for e in entries]
        for entry in entries:
            stored_request = await store.get_request(entry.request_id or "")
            assert stored_request is not None
            assert stored_request.last_log_index == entry.index

        roots = {size: naive_root(leaves[:size]) for size in range(201)}
        for size in (1, 2, 3, 7, 8, 64, 100, 127, 128, 199, 200):
            assert await store.log_root(size) == roots[size]
        for index in range(200):
            proof = await store.inclusion_proof(index, 200)
            merkle.verify_inclusion(leaves[index], index, 200, proof, roots[200])
        for index, size in ((0, 1), (5, 6), (63, 100), (99, 100), (128, 129)):
            proof = await store.inclusion_proof(index, size)
            merkle.verify_inclusion(leaves[index], index, size, proof, roots[size])
        for old, new in ((0, 200), (1, 200), (7, 8), (8, 200), (13, 77), (100, 200), (200, 200)):
            proof = await store.consistency_proof(old, new)
            merkle.verify_consistency(old, new, roots[old], roots[new], proof)
        # a later append on another store (stale frontier cache) still extends the same tree
        extra = await stores[1].insert_request(make_request(9999), envelope(9999), Event.BLOCKED)
        assert extra.last_log_index == 200
        leaves.append(merkle.leaf_hash(envelope(9999)))
        assert await stores[2].log_root(201) == naive_root(leaves)
        proof = await store.consistency_proof(200, 201)
        merkle.verify_consistency(200, 201, roots[200], naive_root(leaves), proof)
    finally:
        for one in stores:
            await one.close()


async def test_proofs_outside_the_log_raise(store: SqlStore) -> None:
    await store.insert_request(make_request(1), envelope(1), Event.NOTIFIED)
    assert await store.log_root(0) == merkle.EMPTY_ROOT
    assert await store.inclusion_proof(0, 1) == []
    with pytest.raises(EvidenceError):
        await store.log_root(2)
    with pytest.raises(EvidenceError):
        await store.inclusion_proof(1, 1)
    with pytest.raises(EvidenceError):
        await store.inclusion_proof(0, 5)
    with pytest.raises(EvidenceError):
        await store.consistency_proof(1, 5)
    with pytest.raises(EvidenceError):
        await store.consistency_proof(1, 0)


async def test_log_reads(store: SqlStore) -> None:
    for n in range(7):
        await store.insert_request(make_request(n), envelope(n), Event.NOTIFIED)
    committed = await store.commit(
        dataclasses.replace(
            advance((await store.get_request("req-2")) or make_request(2)),
            attestation=b"x",
            event=Event.EXPIRED,
        )
    )
    assert committed.last_log_index == 7
    assert [e.index for e in await store.log_entries(2, 5)] == [2, 3, 4]
    assert await store.log_entries(8, 10) == []
    assert [e.index for e in await store.log_entries_for("req-2")] == [2, 7]
    assert await store.log_entries_for("nope") == []
    # ranges are read on the DBAPI cursor, a request's entries through SQLAlchemy: the same
    ranged = await store.log_entries(0, 8)
    by_request = [e for n in range(7) for e in await store.log_entries_for(f"req-{n}")]
    assert ranged == sorted(by_request, key=lambda e: e.index)
    assert all(e.created_at.tzinfo is UTC and type(e.envelope) is bytes for e in ranged)
    assert ranged[7].envelope == b"x" and ranged[7].event is Event.EXPIRED
    assert await store.log_entries(5, 100) == ranged[5:]


async def test_checkpoints(store: SqlStore) -> None:
    assert await store.latest_checkpoint() is None
    first = Checkpoint(1, b"\x01" * 32, "origin\n1\nAQ==\n\n— sig\n", T0)
    later = Checkpoint(5, b"\x05" * 32, "origin\n5\nBQ==\n", T0 + timedelta(minutes=1))
    await store.add_checkpoint(first)
    await store.add_checkpoint(later)
    resigned = dataclasses.replace(later, note="origin\n5\nBQ==\n\n— new key\n")
    await store.add_checkpoint(resigned)  # the same size may be signed again
    latest = await store.latest_checkpoint()
    assert latest == resigned
    assert latest is not None
    assert_utc(latest.created_at)


async def test_posts(store: SqlStore) -> None:
    await store.insert_request(make_request(1))
    slack = Post("req-1", Platform.SLACK, "finance", "C1", "1700.01", None, {"ts": "1"})
    teams = Post("req-1", Platform.TEAMS, "finance", "19:abc", "act-1", "conv-1")
    await store.add_post(slack)
    await store.add_post(teams)
    assert await store.posts("req-1") == [slack, teams]
    assert await store.posts("req-1", Platform.TEAMS) == [teams]
    assert await store.posts("req-2") == []
    threaded = dataclasses.replace(slack, thread_id="1700.01", extra={"ts": "2"})
    await store.add_post(threaded)  # the same message again updates it
    assert await store.posts("req-1", Platform.SLACK) == [threaded]
    with pytest.raises(NotFound):
        await store.add_post(dataclasses.replace(slack, request_id="missing"))


async def test_list_requests_filters_newest_first(store: SqlStore) -> None:
    for n in range(6):
        await store.insert_request(
            make_request(
                n,
                agent_id="agent-a" if n % 2 else "agent-b",
                status=Status.PENDING if n < 4 else Status.DENIED,
            )
        )
    ids = [r.id for r in await store.list_requests()]
    assert ids == [f"req-{n}" for n in (5, 4, 3, 2, 1, 0)]
    pending = await store.list_requests(status=Status.PENDING)
    assert [r.id for r in pending] == ["req-3", "req-2", "req-1", "req-0"]
    by_agent = await store.list_requests(agent_id="agent-a", status=Status.PENDING)
    assert [r.id for r in by_agent] == ["req-3", "req-1"]
    window = await store.list_requests(
        since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=4)
    )
    assert [r.id for r in window] == ["req-3", "req-2", "req-1"]
    plus5 = timezone(timedelta(hours=5))
    shifted = await store.list_requests(since=(T0 + timedelta(seconds=4)).astimezone(plus5))
    assert [r.id for r in shifted] == ["req-5", "req-4"]
    page = await store.list_requests(limit=2, offset=1)
    assert [r.id for r in page] == ["req-4", "req-3"]
    assert len(await store.list_requests(limit=None)) == 6


async def test_rate_limit_is_exact_under_concurrency(store: SqlStore, second: SqlStore) -> None:
    window = T0.replace(second=0, microsecond=0)
    hits = [(store if i % 2 else second).take_rate("agent-1", window, 25) for i in range(60)]
    results = await asyncio.gather(*hits)
    assert results.count(True) == 25
    assert not await store.take_rate("agent-1", window, 25)
    assert await store.take_rate("agent-2", window, 25)  # keys are independent
    assert not await store.take_rate("agent-3", window, 0)

    later = window + timedelta(minutes=1)
    assert await second.take_rate("agent-1", later, 25)
    # the first hit of a new window pruned the key's old window (and only that key's)
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT key, count FROM rate_counters ORDER BY key, window_start"
        ).all()
    assert [tuple(row) for row in rows] == [("agent-1", 1), ("agent-2", 1)]


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////nonexistent-dir/for/signoff.db",
        pytest.param(
            "postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/x?connect_timeout=2",
            marks=pytest.mark.postgres,
        ),
    ],
)
async def test_unreachable_database_raises_store_error(url: str) -> None:
    with pytest.raises(StoreError) as caught:
        await SqlStore.open(url)
    message = caught.value.diagnostics()
    assert "\n" not in message
    assert "s3cret-pw" not in message and "s3cret-pw" not in str(caught.value)
    assert "unavailable" in message


async def test_closed_store_raises_store_error(store_url: str) -> None:
    opened = await SqlStore.open(store_url)
    await opened.close()
    await opened.close()
    with pytest.raises(StoreError, match="closed"):
        await opened.ping()
    with pytest.raises(StoreError, match="closed"):
        await opened.add_agent(Agent("late", "1" * 64, T0))


@pytest.mark.postgres
async def test_connections_lost_while_idle_are_replaced_without_an_error(pg_url: str) -> None:
    opened = await SqlStore.open(pg_url)
    try:
        await opened.ping()
        await opened.add_agent(Agent("agent-1", "h" * 64, T0))
        with psycopg.connect(pg_url.replace("+psycopg", "", 1), autocommit=True) as conn:
            pids = [  # every other session of this database, as a restart would end them
                row[0]
                for row in conn.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ]
        assert pids
        for pid in pids:
            terminate_and_wait(pg_url, pid)
        # each pool sees its connections closed before using them: nothing fails
        await opened.ping()
        await opened.add_agent(Agent("agent-2", "i" * 64, T0))
        assert {a.id for a in await opened.list_agents()} == {"agent-1", "agent-2"}
    finally:
        await opened.close()


async def test_upgrade_from_the_first_revision_keeps_data(store_url: str) -> None:
    engine = make_engine(parse_url(store_url), pool_size=1)
    try:
        migrate.upgrade(engine, "0001")
        with engine.connect().execution_options(signoff_write=True) as conn, conn.begin():
            conn.exec_driver_sql(
                "INSERT INTO agents (id, token_hash, labels, suspended, created_at) "
                "VALUES ('old-agent', 'abc', '{\"k\": \"v\"}', false, '2026-01-02 03:04:05')"
            )
        with engine.connect() as conn:
            assert migrate.current_revision(conn) == "0001"
    finally:
        engine.dispose()

    upgraded = await SqlStore.open(store_url)
    try:
        agent = await upgraded.get_agent("old-agent")
        assert agent is not None
        assert agent.labels == {"k": "v"} and agent.created_at == T0.replace(microsecond=0)
        with upgraded.engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.head_revision()
        assert differences(upgraded.engine) == []
    finally:
        await upgraded.close()


async def test_upgrade_keeps_data_and_models_match_migrations(store_url: str) -> None:
    opened = await SqlStore.open(store_url)
    try:
        await opened.add_agent(Agent("agent-1", "f" * 64, T0))
        stored = await opened.insert_request(full_request(), envelope(1), Event.APPROVED)
        assert differences(opened.engine) == []
        with opened.engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        assert version == head_revision()
    finally:
        await opened.close()

    reopened = await SqlStore.open(store_url)  # runs the upgrade again on existing data
    try:
        assert await reopened.get_request(stored.id) == stored
        assert await reopened.get_agent("agent-1") is not None
        assert await reopened.log_size() == 1
        assert differences(reopened.engine) == []
    finally:
        await reopened.close()


async def test_concurrent_writes_on_one_store_isolate_a_refusal(store: SqlStore) -> None:
    """Writes issued together (grouped into one transaction on SQLite) succeed or fail one by
    one: a reused idempotency key and a lost compare-and-set refuse only themselves."""
    base = await store.insert_request(make_request(100), envelope(100), Event.NOTIFIED)
    inserts = [
        store.insert_request(
            make_request(n, idempotency_key=f"k{n % 8}"), envelope(n), Event.NOTIFIED
        )
        for n in range(10)  # 8 and 9 reuse the keys of 0 and 1
    ]
    approve = dataclasses.replace(advance(base), attestation=b"a", event=Event.APPROVED)
    deny = dataclasses.replace(advance(base), attestation=b"d", event=Event.DENIED)
    results = await asyncio.gather(
        *inserts, store.commit(approve), store.commit(deny), return_exceptions=True
    )
    conflicts = [r for r in results if isinstance(r, Conflict)]
    stored = [r for r in results if isinstance(r, Request)]
    assert len(conflicts) == 3 and len(stored) == 9, results
    for first, reuse in ((0, 8), (1, 9)):  # one request per key (which one is a race)
        assert isinstance(results[first], Request) != isinstance(results[reuse], Request)
    assert all(isinstance(r, Request) for r in results[2:8])

    size = await store.log_size()
    assert size == 1 + 9
    entries = await store.log_entries(0, size)
    assert [e.index for e in entries] == list(range(size))
    for request in stored:
        assert request.last_log_index is not None
        assert entries[request.last_log_index].request_id == request.id
        assert await store.get_request(request.id) == request
    leaves = [e.leaf_hash for e in entries]
    assert await store.log_root(size) == naive_root(leaves)


async def test_in_memory_sqlite_store_for_tests() -> None:
    memory = await SqlStore.open("sqlite://")
    try:
        stored = await memory.insert_request(make_request(1), envelope(1), Event.NOTIFIED)
        assert await memory.get_request("req-1") == stored
        assert await memory.log_root(1) == merkle.leaf_hash(envelope(1))
    finally:
        await memory.close()
