"""The audit log: every action, and every read of a resident's data, with who and when.

Entries are written in the same transaction as what they record, so an action that did
not happen is not logged and one that did is never missing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import utc_now

from .db import AuditEntry, User


def audit(
    session: AsyncSession,
    user: User,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditEntry(
            org_id=user.org_id,
            at=utc_now(),
            actor=user.username,
            role=user.role,
            action=action,
            target=target,
            detail=detail or {},
        )
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
    """Newest first; ``before`` (an entry id) pages back; ``action`` matches an action
    or its family ("resident" matches "resident.read" and "resident.update")."""
    query = select(AuditEntry).where(AuditEntry.org_id == org_id)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if target is not None:
        query = query.where(AuditEntry.target == target)
    if action is not None:
        family = action.rstrip(".")
        in_family = AuditEntry.action.startswith(f"{family}.", autoescape=True)
        query = query.where((AuditEntry.action == family) | in_family)
    rows = await session.execute(query.order_by(AuditEntry.id.desc()).limit(limit))
    return list(rows.scalars())
