"""The audit log: every action, and every read of a resident's data, with who and when.

Entries are written in the same transaction as what they record, so an action that did
not happen is not logged and one that did is never missing. Each organisation's entries
form a hash chain (cloud/chain.py, docs/audit.md): an entry is numbered and hashed when
its transaction commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import utc_now

from .chain import append, json_value
from .db import AuditEntry, User


def audit(
    session: AsyncSession,
    user: User,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    append(
        session,
        AuditEntry(
            org_id=user.org_id,
            at=utc_now(),
            actor=user.username,
            role=user.role,
            action=action,
            target=target,
            detail=json_value(detail),
        ),
    )


async def read_audit(
    session: AsyncSession,
    org_id: str,
    *,
    limit: int = 200,
    before: int | None = None,
    actor: str | None = None,
    target: str | None = None,
    action: str | None = None,
) -> list[AuditEntry]:
    """Newest first, in the chain's order; ``before`` (an entry id) pages back;
    ``action`` matches an action or its family ("resident" matches "resident.read" and
    "resident.update")."""
    query = select(AuditEntry).where(AuditEntry.org_id == org_id)
    if before is not None:
        of_before = select(AuditEntry.seq).where(
            AuditEntry.org_id == org_id, AuditEntry.id == before
        )
        query = query.where(AuditEntry.seq < of_before.scalar_subquery())
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if action is not None:
        family = action.rstrip(".")
        in_family = AuditEntry.action.startswith(f"{family}.", autoescape=True)
        query = query.where((AuditEntry.action == family) | in_family)
    rows = await session.execute(query.order_by(AuditEntry.seq.desc()).limit(limit))
    return list(rows.scalars())
