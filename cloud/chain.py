"""The dispatch service's hash-chained logs: the audit log (one chain per organisation)
and the lock log (one chain per lock). devices/chain.py defines the chain; this module
appends to it and checks it (docs/audit.md).

Appending. ``append`` keeps an entry with its session until the session commits; a
before_commit listener then flushes everything else the transaction writes, takes the
head row (log_chains) of each chain it appends to FOR UPDATE, in one order (organisation,
then chain), numbers and hashes its entries and moves the head, and the commit follows.
So a chain's head is always the last lock a transaction takes, and it is held only for
the inserts and the commit: a writer waiting for a head may hold alarm or command rows,
but the holder of the head waits for nothing else, so no cycle (no deadlock) can form.
Two replicas on one PostgreSQL append to a chain one after the other, in commit order;
SQLite has one writer at a time anyway. The entries go with their transaction: a
rollback drops them, as it drops what they record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from devices import utc_now
from devices.chain import GENESIS, ChainCheck, Head, Link, Verdict, next_link

from .db import AuditEntry, LockLogEntry, LogChain

AUDIT = "audit"
LOCK_PREFIX = "lock:"
PAGE = 1000  # entries read at a time by a check
_PENDING = "trygg.chain.pending"

Chained = AuditEntry | LockLogEntry


def lock_chain(lock_id: str) -> str:
    return f"{LOCK_PREFIX}{lock_id}"


def chain_of(row: Chained) -> str:
    return AUDIT if isinstance(row, AuditEntry) else lock_chain(row.lock_id)


def stamp(at: datetime) -> str:
    """A time as it is hashed: UTC, to the microsecond (what both databases keep)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def json_value(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """``detail`` as the JSON column gives it back (string keys, lists for tuples), so
    that the hash made before it is stored is the hash of what is read."""
    value: dict[str, Any] = json.loads(json.dumps(dict(detail or {}), allow_nan=False))
    return value


def audit_fields(row: Any) -> dict[str, object]:
    """What an audit entry's hash covers (``row``: an AuditEntry or a row of its table)."""
    return {
        "log": AUDIT,
        "org": row.org_id,
        "at": stamp(row.at),
        "actor": row.actor,
        "role": row.role,
        "action": row.action,
        "target": row.target,
        "detail": row.detail,
    }


def lock_fields(row: Any) -> dict[str, object]:
    """What a lock-log entry's hash covers (a LockLogEntry or a row of its table)."""
    return {
        "log": "lock",
        "org": row.org_id,
        "lock": row.lock_id,
        "home": row.home_id,
        "at": stamp(row.at),
        "actor": row.actor,
        "role": row.role,
        "action": row.action,
        "outcome": row.outcome,
        "reason": row.reason,
        "command": row.command_id,
        "detail": row.detail,
    }


def append(session: AsyncSession | Session, row: Chained) -> None:
    """Add ``row`` to its chain when ``session`` commits (the caller commits)."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    if not sync.in_transaction():
        # As session.add would: the entry belongs to this transaction, and a rollback
        # before anything else was done still drops it.
        sync.begin()
    sync.info.setdefault(_PENDING, []).append(row)


def _newest(session: Session, org_id: str, chain: str) -> Head | None:
    """The chain's newest stored entry."""
    if chain == AUDIT:
        table, where = AuditEntry.__table__, [AuditEntry.org_id == org_id]
    else:
        table = LockLogEntry.__table__
        lock = chain.removeprefix(LOCK_PREFIX)
        where = [LockLogEntry.org_id == org_id, LockLogEntry.lock_id == lock]
    newest = select(table.c.seq, table.c.hash).where(*where).order_by(table.c.seq.desc())
    row = session.execute(newest.limit(1)).one_or_none()
    return None if row is None else Head(int(row.seq), str(row.hash))


def _take_head(session: Session, org_id: str, chain: str) -> Head:
    """Lock the chain's head until the commit, and read it.

    An update first, not a select: it takes the row's lock on PostgreSQL, and on SQLite
    the database's write lock (its driver begins a transaction only at the first write),
    so no other writer can move the head between this read and this commit."""
    key = (LogChain.org_id == org_id, LogChain.chain == chain)
    touch = (
        update(LogChain)
        .where(*key)
        .values(seq=LogChain.seq)
        .execution_options(synchronize_session=False)
    )
    if session.execute(touch).rowcount == 0:  # type: ignore[attr-defined]
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        session.execute(
            insert(LogChain)
            .values(org_id=org_id, chain=chain, seq=0, hash=GENESIS, updated_at=utc_now())
            .on_conflict_do_nothing(index_elements=["org_id", "chain"])
        )
        session.execute(touch)  # another writer's, perhaps, committed meanwhile
    row = session.execute(select(LogChain.seq, LogChain.hash).where(*key)).one()
    head = Head(int(row.seq), str(row.hash))
    # A head behind the entries (lost, or set back by hand) must not stop every action
    # that is audited: go on from the newest entry. A head ahead of them is kept, so that
    # entries removed from the end still show as missing.
    newest = _newest(session, org_id, chain)
    return newest if newest is not None and newest.seq > head.seq else head


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint: the entries wait for the transaction's own commit
    rows: list[Chained] | None = session.info.pop(_PENDING, None)
    if not rows:
        return
    session.flush()  # everything else first: the heads are the transaction's last locks
    chains: dict[tuple[str, str], list[Chained]] = {}
    for row in rows:
        chains.setdefault((row.org_id, chain_of(row)), []).append(row)
    for org_id, chain in sorted(chains):
        head = _take_head(session, org_id, chain)
        for row in chains[(org_id, chain)]:
            fields = audit_fields(row) if isinstance(row, AuditEntry) else lock_fields(row)
            link = next_link(head if head.seq else None, fields)
            row.seq, row.prev_hash, row.hash = link.seq, link.prev_hash, link.hash
            session.add(row)
            head = Head(link.seq, link.hash)
        session.execute(
            update(LogChain)
            .where(LogChain.org_id == org_id, LogChain.chain == chain)
            .values(seq=head.seq, hash=head.hash, updated_at=utc_now())
            .execution_options(synchronize_session=False)
        )


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # rolled back (a commit took them already)
        session.info.pop(_PENDING, None)


# -- checking ---------------------------------------------------------------------------


async def recorded_head(session: AsyncSession, org_id: str, chain: str) -> Head | None:
    row = (
        await session.execute(
            select(LogChain.seq, LogChain.hash).where(
                LogChain.org_id == org_id, LogChain.chain == chain
            )
        )
    ).one_or_none()
    return None if row is None or row.seq == 0 else Head(int(row.seq), str(row.hash))


async def verify_chain(session: AsyncSession, org_id: str, chain: str) -> Verdict:
    """Check one chain whole, oldest first, against its recorded head; read page by page
    as table rows (the columns' types still apply), so nothing piles up in the session."""
    check = ChainCheck(await recorded_head(session, org_id, chain))
    if chain == AUDIT:
        table, fields = AuditEntry.__table__, audit_fields
        where = [table.c.org_id == org_id]
    elif chain.startswith(LOCK_PREFIX):
        table, fields = LockLogEntry.__table__, lock_fields
        where = [table.c.org_id == org_id, table.c.lock_id == chain.removeprefix(LOCK_PREFIX)]
    else:
        raise ValueError(f"no chain {chain!r}")
    after: int | None = None
    while not check.done:
        page = select(table).where(*where).order_by(table.c.seq).limit(PAGE)
        if after is not None:
            page = page.where(table.c.seq > after)
        rows = (await session.execute(page)).all()
        for row in rows:
            check.feed(Link(row.seq, row.prev_hash, row.hash, fields(row)))
        if len(rows) < PAGE:
            break
        after = rows[-1].seq
    return check.verdict()


async def chains_of(session: AsyncSession, org_id: str) -> list[str]:
    """Every chain of the organisation: the audit log's and one per lock, whether known
    by its head or by its entries (a lock whose entries were all removed still has its
    head, and one whose head was removed still has entries)."""
    heads = await session.execute(select(LogChain.chain).where(LogChain.org_id == org_id))
    locks = await session.execute(
        select(LockLogEntry.lock_id).where(LockLogEntry.org_id == org_id).distinct()
    )
    found = {AUDIT, *heads.scalars(), *(lock_chain(lock) for lock in locks.scalars())}
    return sorted(found, key=lambda c: (c != AUDIT, c))
