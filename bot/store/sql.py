"""``SqlStore``: the ``bot.ports.Store`` on SQLite or PostgreSQL (SQLAlchemy Core over the
sqlmodel tables of ``bot.store.tables``, run by ``Database``: reads and PostgreSQL writes on its
threads, SQLite writes grouped on the event loop).

A state change, its vote and its attestation commit in one transaction; ``commit`` is
compare-and-set on ``requests.version``. Database failures raise ``StoreError`` (one line, no
password); lost races and duplicates raise ``Conflict``.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, exc, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.caps import pending_cap_reached
from bot.domain import (
    DELIVERY_HOLD,
    Agent,
    Change,
    Checkpoint,
    Delivery,
    Event,
    LogEntry,
    OwedDelivery,
    PendingTimer,
    Platform,
    Post,
    Request,
    SessionCalls,
    Status,
    Vote,
    owes_cards,
    utc,
    with_log_index,
)
from bot.errors import Conflict, NotFound
from bot.store import changes, log, mapping, timers
from bot.store.database import Database
from bot.store.raw import RawQuery, RawStatement, Read
from bot.store.tables import (
    AGENTS,
    CHECKPOINTS,
    DELIVERIES_OWED,
    LOG_ENTRIES,
    POSTS,
    RATE_COUNTERS,
    REQUESTS,
    VOTES,
)

logger = logging.getLogger(__name__)

_INSERT_REQUEST = insert(REQUESTS)
_INSERT_REQUESTS = RawStatement(_INSERT_REQUEST)
_PENDING = Status.PENDING.value
# how many of an agent's requests are pending, counting no further than :cap
_COUNT_PENDING = RawStatement(
    select(func.count()).select_from(
        select(REQUESTS.c.id)
        .where(REQUESTS.c.agent_id == bindparam("agent_id"), REQUESTS.c.status == _PENDING)
        .limit(bindparam("cap"))
        .subquery()
    )
)
# the reads of every decision and long-poll, prebuilt (``RawQuery``)
_REQUEST = RawQuery(select(REQUESTS).where(REQUESTS.c.id == bindparam("id")))
_REQUEST_BY_KEY = RawQuery(
    select(REQUESTS).where(
        REQUESTS.c.agent_id == bindparam("agent_id"),
        REQUESTS.c.idempotency_key == bindparam("key"),
    )
)
_VOTES = RawQuery(
    select(VOTES).where(VOTES.c.request_id == bindparam("id")).order_by(VOTES.c.at, VOTES.c.id)
)
_ALL_POSTS = RawQuery(
    select(POSTS).where(POSTS.c.request_id == bindparam("id")).order_by(POSTS.c.id)
)
_POSTS_ON = RawQuery(
    select(POSTS)
    .where(POSTS.c.request_id == bindparam("id"), POSTS.c.platform == bindparam("platform"))
    .order_by(POSTS.c.id)
)
_AGENT = RawQuery(select(AGENTS).where(AGENTS.c.id == bindparam("value")))
_AGENT_BY_TOKEN = RawQuery(select(AGENTS).where(AGENTS.c.token_hash == bindparam("value")))
# every column but the generated id, which nothing reads back (inline: no RETURNING, so
# the insert can ride in the group's pipeline on PostgreSQL)
_INSERT_VOTE = RawStatement(
    insert(VOTES)
    .values({c.name: bindparam(c.name, type_=c.type) for c in VOTES.c if c.name != "id"})
    .inline()
)
_INSERT_AGENT = insert(AGENTS)
# the deliveries a commit owes (``_owed_rows``)
_INSERT_OWED = RawStatement(insert(DELIVERIES_OWED))
# compare-and-set: SET every column given in the parameters, only at the expected version
_CAS_REQUEST = update(REQUESTS).where(
    REQUESTS.c.id == bindparam("cas_id"), REQUESTS.c.version == bindparam("cas_version")
)


# SPEC §5 Sessions: earlier calls of one session grouped by their label set; memory is bounded
# by the distinct label sets (2^labels at most), not by the calls, and the scan stays inside
# the partial covering index ix_requests_session
_SESSION_CALLS = (
    select(
        REQUESTS.c.labels,
        func.count(),
        func.min(REQUESTS.c.id),
        func.max(REQUESTS.c.id),
        func.max(REQUESTS.c.created_at),
    )
    .where(
        REQUESTS.c.session_key == bindparam("session_key"),
        REQUESTS.c.created_at >= bindparam("since", type_=REQUESTS.c.created_at.type),
    )
    .group_by(REQUESTS.c.labels)
)


def _append(
    pending: log.Pending, attestation: bytes | None, event: Event | None, request_id: str
) -> int | None:
    if attestation is None:
        return None
    if event is None:
        raise ValueError("an attestation needs the event it records")
    return pending.add(attestation, event, request_id)


def _owed_rows(request: Request, *, new: bool) -> list[dict[str, Any]]:
    """The ``deliveries_owed`` rows of committing ``request`` (``new``: its insert, else the
    change that made it final): its cards when new and announced (``owes_cards``), its
    callback when final with a ``callback_url``; each held by the process committing it for
    ``DELIVERY_HOLD``."""
    kinds = []
    if new and owes_cards(request):
        kinds.append(Delivery.CARDS)
    if request.callback_url and request.status.final:
        kinds.append(Delivery.CALLBACK)
    if not kinds:  # most auto-tier requests: nothing computed on the hot path
        return []
    at = utc(request.decided_at or request.created_at) + DELIVERY_HOLD
    return [
        {"request_id": request.id, "kind": kind.value, "due_at": at, "attempts": 0, "version": 0}
        for kind in kinds
    ]


def _pending_count(conn: Connection, pending: log.Pending, agent_id: str, cap: int) -> int:
    """The agent's pending requests, in the database and queued in this transaction."""
    stored = int(_COUNT_PENDING.scalar(conn, {"agent_id": agent_id, "cap": cap}))
    queued = pending.queued(_INSERT_REQUESTS)
    return stored + sum(1 for v in queued if v["agent_id"] == agent_id and v["status"] == _PENDING)


def _posts_read(request_id: str, platform: Platform | None) -> Read:
    if platform is None:
        return _ALL_POSTS, {"id": request_id}
    return _POSTS_ON, {"id": request_id, "platform": platform.value}


def _parse_at(value: Any) -> datetime:
    # SQLite hands an aggregate of a DATETIME column back as the stored text
    return utc(datetime.fromisoformat(str(value)))


class SqlStore(Database):
    """The store. Build with ``await SqlStore.open(url)``; ``await close()`` when done."""

    def _upsert(self, table: Any) -> Any:
        """``INSERT`` with ``ON CONFLICT`` support for this dialect."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # agents

    async def add_agent(self, agent: Agent) -> None:
        """Raises ``Conflict`` when the id (or the token hash) exists."""
        values = mapping.from_agent(agent)

        def add(conn: Connection, _: log.Pending) -> None:
            try:
                conn.execute(_INSERT_AGENT, values)
            except exc.IntegrityError as error:
                raise Conflict(f"agent {agent.id!r} (or its token) already exists") from error

        await self.transact(add)

    async def get_agent(self, agent_id: str) -> Agent | None:
        return await self._agent_where(_AGENT, agent_id)

    async def agent_by_token_hash(self, token_hash: str) -> Agent | None:
        return await self._agent_where(_AGENT_BY_TOKEN, token_hash)

    async def _agent_where(self, query: RawQuery, value: str) -> Agent | None:
        (rows,) = await self.fetch((query, {"value": value}))
        return mapping.to_agent(rows[0]) if rows else None

    async def list_agents(self) -> list[Agent]:
        query = select(AGENTS).order_by(AGENTS.c.created_at, AGENTS.c.id)
        rows = await self.read(lambda conn: conn.execute(query).all())
        return [mapping.to_agent(row) for row in rows]

    async def set_agent_suspended(self, agent_id: str, suspended: bool) -> Agent:
        """Raises ``NotFound``."""
        statement = (
            update(AGENTS)
            .where(AGENTS.c.id == agent_id)
            .values(suspended=suspended)
            .returning(*AGENTS.c)
        )
        row = await self.transact(lambda conn, _: conn.execute(statement).first())
        if row is None:
            raise NotFound(f"no agent {agent_id!r}")
        return mapping.to_agent(row)

    # requests

    async def insert_request(
        self,
        request: Request,
        attestation: bytes | None = None,
        event: Event | None = None,
        *,
        max_pending: int | None = None,
    ) -> Request:
        """Insert ``request`` and append ``attestation`` (needs ``event``) in one transaction.
        Returns it with ``last_log_index`` set. Raises ``Conflict`` when the id or the
        (agent, idempotency key) exists, ``ValueError`` for an attestation without event,
        ``RateLimited`` when ``max_pending`` is given and the agent already has that many
        requests pending (counted under the append lock, so every writer of the database,
        in any process, takes turns from the count to its commit)."""
        values = mapping.from_request(request)
        owed = _owed_rows(request, new=True)

        def insert_(conn: Connection, pending: log.Pending) -> int | None:
            if max_pending is not None:
                pending.lock()
                if _pending_count(conn, pending, request.agent_id, max_pending) >= max_pending:
                    raise pending_cap_reached(request.agent_id, max_pending)
            index = _append(pending, attestation, event, request.id)
            if index is not None:
                values["last_log_index"] = index
            if pending.batch:  # written with the group's other requests
                pending.insert_later(_INSERT_REQUESTS, values)
                for row in owed:
                    pending.insert_later(_INSERT_OWED, row)
                return index
            try:
                _INSERT_REQUESTS.insert_many(conn, [values])
            except exc.IntegrityError as error:
                raise Conflict(
                    f"request {request.id!r} or idempotency key "
                    f"{request.idempotency_key!r} of agent {request.agent_id!r} already exists"
                ) from error
            if owed:
                _INSERT_OWED.insert_many(conn, owed)
            return index

        # on PostgreSQL a request without a cap only queues its rows (it is in a batch)
        index = await self.transact(insert_, queues_only=max_pending is None)
        if index is None:
            return request
        return with_log_index(request, index)

    async def get_request(self, request_id: str) -> Request | None:
        return await self._request_where(_REQUEST, {"id": request_id})

    async def request_by_idempotency_key(self, agent_id: str, key: str) -> Request | None:
        return await self._request_where(_REQUEST_BY_KEY, {"agent_id": agent_id, "key": key})

    async def _request_where(self, query: RawQuery, values: dict[str, Any]) -> Request | None:
        (rows,) = await self.fetch((query, values))
        return mapping.to_request(rows[0]) if rows else None

    async def list_requests(
        self,
        *,
        status: Status | None = None,
        agent_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[Request]:
        """Newest first (by ``created_at``, then id); ``since`` inclusive, ``until``
        exclusive; ``limit=None`` for all."""
        query = select(REQUESTS)
        if status is not None:
            query = query.where(REQUESTS.c.status == status.value)
        if agent_id is not None:
            query = query.where(REQUESTS.c.agent_id == agent_id)
        if since is not None:
            query = query.where(REQUESTS.c.created_at >= utc(since))
        if until is not None:
            query = query.where(REQUESTS.c.created_at < utc(until))
        query = query.order_by(REQUESTS.c.created_at.desc(), REQUESTS.c.id.desc())
        query = query.limit(limit).offset(offset or None)
        rows = await self.read(lambda conn: conn.execute(query).all())
        return [mapping.to_request(row) for row in rows]

    async def session_calls(self, key: str, since: datetime) -> list[SessionCalls]:
        """The calls recorded with session key ``key`` at or after ``since``, one summary per
        distinct label set (one indexed query)."""
        params = {"session_key": key, "since": utc(since)}
        rows = await self.read(lambda conn: conn.execute(_SESSION_CALLS, params).all())
        return [
            SessionCalls(
                labels=tuple(labels.split(",")) if labels else (),
                count=int(count),
                first_request=first,
                last_request=last,
                last_at=utc(last_at) if isinstance(last_at, datetime) else _parse_at(last_at),
            )
            for labels, count, first, last, last_at in rows
        ]

    async def commit(self, change: Change) -> Request:
        """Compare-and-set ``change.before`` → ``change.after`` with its vote and attestation
        in one transaction; returns ``after`` with ``last_log_index`` set. Raises ``Conflict``
        when stale, malformed (other id, version not ``before + 1``) or when the vote's
        approver already voted; ``ValueError`` for an attestation without event."""
        before, after, vote = change.before, change.after, change.vote
        if after.id != before.id or (vote is not None and vote.request_id != before.id):
            raise Conflict(f"change of request {before.id!r} names another request")
        if after.version != before.version + 1:
            raise Conflict(
                f"request {before.id!r}: version must step from {before.version} "
                f"to {before.version + 1}, not {after.version}"
            )
        values = mapping.from_request(after)
        del values["id"]
        values["cas_id"], values["cas_version"] = before.id, before.version
        owed = [] if before.status.final else _owed_rows(after, new=False)

        def commit_(conn: Connection, pending: log.Pending) -> int | None:
            index = _append(pending, change.attestation, change.event, before.id)
            if index is not None:
                values["last_log_index"] = index
            if conn.execute(_CAS_REQUEST, values).rowcount != 1:
                raise Conflict(f"request {before.id!r} changed concurrently")
            changes.announce(conn, pending, before.id)  # other processes' long-polls wake
            if owed and pending.batch:
                for row in owed:
                    pending.insert_later(_INSERT_OWED, row)
            elif owed:
                _INSERT_OWED.insert_many(conn, owed)
            if vote is not None and pending.batch:  # a duplicate fails the group's flush,
                pending.insert_later(_INSERT_VOTE, mapping.from_vote(vote))  # then runs alone
            elif vote is not None:
                try:
                    _INSERT_VOTE.insert_many(conn, [mapping.from_vote(vote)])
                except exc.IntegrityError as error:
                    raise Conflict(
                        f"{vote.approver.key} already voted on request {before.id!r}"
                    ) from error
            return index

        index = await self.transact(commit_)
        if index is None:
            return after
        return with_log_index(after, index)

    async def pending_timers(
        self,
        *,
        since: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 5000,
    ) -> list[PendingTimer]:
        return await timers.pending_timers(self, since=since, after=after, limit=limit)

    async def votes(self, request_id: str) -> list[Vote]:
        (rows,) = await self.fetch((_VOTES, {"id": request_id}))
        return [mapping.to_vote(row) for row in rows]

    # deliveries owed (``bot.domain.Delivery``)

    async def deliveries_due(self, kind: Delivery, now: datetime, limit: int) -> list[OwedDelivery]:
        """Deliveries of ``kind`` owed that nobody holds at ``now`` (their holder's time ran
        out), oldest first."""
        table = DELIVERIES_OWED
        query = (
            select(table.c.request_id, table.c.attempts, table.c.version)
            .where(table.c.kind == kind.value, table.c.due_at <= utc(now))
            .order_by(table.c.due_at)
            .limit(limit)
        )
        rows = await self.read(lambda conn: conn.execute(query).all())
        return [OwedDelivery(str(r[0]), kind, int(r[1]), int(r[2])) for r in rows]

    async def hold_delivery(
        self, owed: OwedDelivery, until: datetime, *, attempts: int, taking: datetime | None = None
    ) -> OwedDelivery | None:
        """Hold ``owed`` until ``until`` with ``attempts`` made, if nobody took or settled it
        since ``owed.version`` (compare-and-set). ``taking``: only if its holder's time ran
        out by then (a take-over). Returns the new hold, or None when it was lost."""
        table = DELIVERIES_OWED
        where = [
            table.c.request_id == owed.request_id,
            table.c.kind == owed.kind.value,
            table.c.version == owed.version,
        ]
        if taking is not None:
            where.append(table.c.due_at <= utc(taking))
        statement = (
            update(table)
            .where(*where)
            .values(due_at=utc(until), attempts=attempts, version=owed.version + 1)
        )

        def hold(conn: Connection, _: log.Pending) -> bool:
            return bool(conn.execute(statement).rowcount == 1)

        if not await self.transact(hold):
            return None
        return OwedDelivery(owed.request_id, owed.kind, attempts, owed.version + 1)

    async def settle_delivery(self, request_id: str, kind: Delivery) -> None:
        """The delivery was made or given up: forget it."""
        table = DELIVERIES_OWED
        await self.execute(
            delete(table).where(table.c.request_id == request_id, table.c.kind == kind.value)
        )

    async def request_view(
        self, request_id: str, platform: Platform | None = None
    ) -> tuple[Request | None, list[Vote], list[Post]]:
        # one round trip on PostgreSQL (a request that does not exist has no votes or cards)
        key = {"id": request_id}
        reads = [(_REQUEST, key), (_VOTES, key)]
        if platform is not None:
            reads.append(_posts_read(request_id, platform))
        found, votes, *cards = await self.fetch(*reads)
        if not found:
            return None, [], []
        return (
            mapping.to_request(found[0]),
            [mapping.to_vote(v) for v in votes],
            [mapping.to_post(p) for p in cards[0]] if cards else [],
        )

    # rate limits

    async def take_rate(self, key: str, window_start: datetime, limit: int) -> bool:
        """Count one hit for ``key`` in the window starting at ``window_start`` unless it
        already has ``limit``; atomic across processes. The first hit of a window prunes the
        key's older windows."""
        if limit <= 0:
            return False
        start = utc(window_start)
        table = RATE_COUNTERS
        statement = (
            self._upsert(table)
            .values(key=key, window_start=start, count=1)
            .on_conflict_do_update(
                index_elements=[table.c.key, table.c.window_start],
                set_={"count": table.c.count + 1},
                where=table.c.count < limit,
            )
            .returning(table.c.count)
        )
        prune = delete(table).where(table.c.key == key, table.c.window_start < start)

        def take(conn: Connection, _: log.Pending) -> bool:
            count = conn.execute(statement).scalar()
            if count == 1:
                conn.execute(prune)
            return count is not None

        return await self.transact(take)

    # where cards went

    async def add_post(self, post: Post) -> None:
        """Record (or update, for the same message) where a card was posted. Raises
        ``NotFound`` when the request does not exist."""
        values = mapping.from_post(post)
        statement = (
            self._upsert(POSTS)
            .values(values)
            .on_conflict_do_update(
                index_elements=[
                    POSTS.c.request_id,
                    POSTS.c.platform,
                    POSTS.c.channel,
                    POSTS.c.message_id,
                ],
                set_={
                    "group": values["group"],
                    "thread_id": values["thread_id"],
                    "extra": values["extra"],
                },
            )
        )

        def add(conn: Connection, _: log.Pending) -> None:
            try:
                conn.execute(statement)
            except exc.IntegrityError as error:
                raise NotFound(f"no request {post.request_id!r}") from error

        await self.transact(add)

    async def posts(self, request_id: str, platform: Platform | None = None) -> list[Post]:
        (rows,) = await self.fetch(_posts_read(request_id, platform))
        return [mapping.to_post(row) for row in rows]

    # the Merkle log

    async def log_size(self) -> int:
        return await self.read(log.size)

    async def log_entries(self, start: int, stop: int) -> list[LogEntry]:
        """Entries with ``start <= index < stop``, in index order."""
        return await self.read(functools.partial(log.entries, start=start, stop=stop))

    async def log_entries_for(self, request_id: str) -> list[LogEntry]:
        query = (
            select(LOG_ENTRIES)
            .where(LOG_ENTRIES.c.request_id == request_id)
            .order_by(LOG_ENTRIES.c.idx)
        )
        rows = await self.read(lambda conn: conn.execute(query).all())
        return [mapping.to_log_entry(row) for row in rows]

    async def log_root(self, size: int) -> bytes:
        """Raises ``EvidenceError`` for a size beyond the log."""
        return await self.read(lambda conn: log.root(conn, size))

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """Raises ``EvidenceError`` for an index or size outside the log."""
        return await self.read(lambda conn: log.inclusion_proof(conn, index, size))

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """Raises ``EvidenceError`` for sizes out of order or beyond the log."""
        return await self.read(lambda conn: log.consistency_proof(conn, old_size, new_size))

    async def latest_checkpoint(self) -> Checkpoint | None:
        query = (
            select(CHECKPOINTS)
            .order_by(CHECKPOINTS.c.size.desc(), CHECKPOINTS.c.id.desc())
            .limit(1)
        )
        row = await self.read(lambda conn: conn.execute(query).first())
        return None if row is None else mapping.to_checkpoint(row)

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self.execute(insert(CHECKPOINTS), mapping.from_checkpoint(checkpoint))

    async def set_checkpoint_note(self, size: int, root: bytes, note: str) -> None:
        """Replace the note of the checkpoint(s) of ``size`` and ``root`` (witness
        cosignatures added; the body and the log's signature stay as they were)."""
        statement = (
            update(CHECKPOINTS)
            .where(CHECKPOINTS.c.size == size, CHECKPOINTS.c.root == root)
            .values(note=note)
        )
        await self.execute(statement)

    async def recent_checkpoints(self, limit: int) -> list[Checkpoint]:
        """The newest ``limit`` checkpoints, newest first."""
        query = (
            select(CHECKPOINTS)
            .order_by(CHECKPOINTS.c.size.desc(), CHECKPOINTS.c.id.desc())
            .limit(limit)
        )
        rows = await self.read(lambda conn: conn.execute(query).all())
        return [mapping.to_checkpoint(row) for row in rows]
