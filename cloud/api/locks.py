"""A lock's log, with the check of its hash chain (cloud/locklog.py, docs/audit.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import DeviceType
from devices.chain import Verdict

from ..audit import audit
from ..chain import lock_chain
from ..db import Device, LockLogEntry, LogChain
from ..locklog import read_lock_log, verify_lock_log
from .deps import LockLogReader, SessionDep
from .strict import StrictRoute

router = APIRouter(tags=["locks"], route_class=StrictRoute)

LockIdPath = Annotated[str, Path(min_length=1, max_length=128, description="the lock's device id")]


class LockLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    lock_id: str
    home_id: str
    actor: str
    role: str
    action: str
    outcome: str
    reason: str | None
    command_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class ChainVerification(BaseModel):
    """The whole chain's check, not only the page's: where it first breaks, and how."""

    valid: bool
    entries: int
    first_broken: int | None
    kind: str | None  # altered, missing, out_of_order
    problem: str | None

    @classmethod
    def of(cls, verdict: Verdict) -> ChainVerification:
        kind = verdict.problem.value if verdict.problem is not None else None
        return cls(
            valid=verdict.valid,
            entries=verdict.entries,
            first_broken=verdict.first_broken,
            kind=kind,
            problem=None if kind is None else f"{kind}: {verdict.detail}",
        )


class LockLog(BaseModel):
    lock_id: str
    entries: list[LockLogOut]
    verification: ChainVerification


async def _is_lock_of(session: AsyncSession, org_id: str, lock_id: str) -> bool:
    """The organisation's lock, or one it has a log of (a lock removed keeps its log)."""
    device = await session.get(Device, (org_id, lock_id))
    if device is not None:
        return device.type == DeviceType.DIGITAL_LOCK.value
    head = await session.get(LogChain, (org_id, lock_chain(lock_id)))
    if head is not None:
        return True
    entry = await session.scalar(
        select(LockLogEntry.id)
        .where(LockLogEntry.org_id == org_id, LockLogEntry.lock_id == lock_id)
        .limit(1)
    )
    return entry is not None


@router.get("/locks/{lock_id}/log")
async def get_lock_log(
    lock_id: LockIdPath,
    user: LockLogReader,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="page back from this entry's number")
    ] = None,
) -> LockLog:
    """Every command to the lock and every event of it, newest first, and the check of
    its whole chain: ``valid``, or the first broken entry and what is wrong there. Audited."""
    if not await _is_lock_of(session, user.org_id, lock_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No lock {lock_id}")
    entries = await read_lock_log(session, user.org_id, lock_id, limit=limit, before=before)
    verdict = await verify_lock_log(session, user.org_id, lock_id)
    # Who opened which door when is personal data of the staff: reading it is audited.
    audit(session, user, "lock_log.read", f"lock:{lock_id}", {"valid": verdict.valid})
    await session.commit()
    return LockLog(
        lock_id=lock_id,
        entries=[LockLogOut.model_validate(e) for e in entries],
        verification=ChainVerification.of(verdict),
    )
