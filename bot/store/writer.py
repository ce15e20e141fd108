"""Write transactions: a group of operations in one transaction.

An *operation* is a synchronous function ``op(conn, pending)`` that writes its rows and queues
its attestations on ``pending`` (``bot.store.log.Pending``). ``run_transaction`` runs a list of
operations in ONE transaction; when one of several raises (a lost compare-and-set, a duplicate
vote), the transaction runs again with each operation in a savepoint, so that one is undone
alone and gets its own exception while the others commit together with their attestations.
Operations must therefore be safe to run again (they only touch the database and ``pending``).

``bot.store.batching.WriteQueue`` gathers the operations of each transaction (its engine
strategies: ``bot.store.group.SqliteWriter``, ``bot.store.pggroup.PgWriter``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, exc

from bot.store import log, pipeline

T = TypeVar("T")
Op = Callable[[Connection, log.Pending], T]
#: gives the connection for one transaction, as a context manager
Connect = Callable[[], AbstractContextManager[Connection]]
Outcome = tuple[bool, Any]  # (True, result) or (False, exception)


def run_transaction(
    connect: Connect,
    frontier: log.Frontier,
    clock: Callable[[], datetime],
    ops: list[Op[Any]],
) -> list[Outcome]:
    """Run ``ops`` in one write transaction on a connection from ``connect``; one outcome
    per op. Raises SQLAlchemy errors (and, when there is a single op, whatever it raises)
    when the transaction fails.

    Several ops (on PostgreSQL also a single one) first run together without savepoints
    (the common case: nobody refuses), their queued inserts written together
    (``log.Pending.insert_later``); if one refuses, or a queued row breaks a constraint, the
    transaction rolls back and runs again with a savepoint per op, each op writing its own
    rows (so a lone op's duplicate still comes out as its own ``Conflict``).

    """
    try:
        return _attempt(connect, frontier, clock, ops, guarded=False)
    except exc.SQLAlchemyError as error:
        # a queued row collided (reported on its statement, or on a later one of the
        # pipeline as aborted): find out whose
        if isinstance(error, exc.IntegrityError) or pipeline.aborted(error):
            return _attempt(connect, frontier, clock, ops, guarded=True)
        raise
    except Exception:  # an op refused (Conflict, NotFound, ValueError): isolate each op
        if len(ops) == 1:
            raise
        return _attempt(connect, frontier, clock, ops, guarded=True)


def pooled(engine: Engine) -> Connect:
    """A ``Connect`` that checks a write connection out of ``engine``'s pool each time."""
    return lambda: engine.connect().execution_options(signoff_write=True)


def _attempt(
    connect: Connect,
    frontier: log.Frontier,
    clock: Callable[[], datetime],
    ops: list[Op[Any]],
    *,
    guarded: bool,
) -> list[Outcome]:
    with connect() as conn:
        with conn.begin():
            # PostgreSQL queues a lone write's rows too: they travel with the COMMIT
            batch = len(ops) > 1 or conn.dialect.name == "postgresql"
            pending = log.Pending(conn, frontier, clock, batch=batch and not guarded)
            if guarded:
                outcomes = [_in_savepoint(conn, pending, op) for op in ops]
            else:
                outcomes = [(True, op(conn, pending)) for op in ops]
            # the rows written at the end and the COMMIT go out together (PostgreSQL)
            pending.prepare()
            with pipeline.pipelined(conn):
                remember = pending.flush()
        if remember is not None:
            remember()
    return outcomes


def _in_savepoint(conn: Connection, pending: log.Pending, op: Op[Any]) -> Outcome:
    # plain SQL: SQLAlchemy's begin_nested() compiles its SAVEPOINT anew on every call
    mark = pending.mark()
    conn.exec_driver_sql("SAVEPOINT signoff_op")
    try:
        result = op(conn, pending)
    except exc.SQLAlchemyError:
        raise  # the database failed: the whole transaction fails
    except Exception as error:  # the operation refused (Conflict, NotFound, ValueError)
        conn.exec_driver_sql("ROLLBACK TO SAVEPOINT signoff_op")
        conn.exec_driver_sql("RELEASE SAVEPOINT signoff_op")
        pending.truncate(mark)
        return False, error
    conn.exec_driver_sql("RELEASE SAVEPOINT signoff_op")
    return True, result
