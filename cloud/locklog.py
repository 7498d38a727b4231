"""The lock log: every command to a lock and every event of one, in one hash chain per
lock (cloud/chain.py, docs/audit.md).

Who writes what:
- the keyless entry's checks (``lock_log``): a staff member's request, ``granted`` or
  ``refused`` with the reason code;
- the command service (cloud/commands.py): a command to a lock ``issued`` (signed and
  sent), and each step the gateway reports (``accepted``, ``done``, ``failed``,
  ``refused``, ``expired``, with the reason), with the lock's state on a confirmation;
- ingest (cloud/ingest.py): what a lock reports of itself (``opened``, ``jammed``,
  ``jam_cleared``), and the state it says the lock is in.

An entry is added to the caller's session and written when the caller commits, with
what it records.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import LOCK_EVENT_ACTIONS, DeviceType, Event, lock_event_cause, utc_now
from devices.chain import Verdict
from devices.wire import COMMAND_CLOCK_SKEW_S

from .chain import append, json_value, lock_chain, verify_chain
from .clock import database_now
from .db import CommandRecord, Device, LockLogEntry, User

LOCK_ACTIONS = frozenset({"unlock", "lock"})
# What a lock's own event says of its state; a jam that clears leaves it unknown.
EVENT_STATES = {"opened": "unlocked", "jammed": "jammed"}
# An event older than the state known, by more than the gateways' clocks may differ,
# is logged but does not set the state (a resend after an outage is not news).
STALE = timedelta(seconds=COMMAND_CLOCK_SKEW_S)


def lock_log(
    session: AsyncSession,
    *,
    org_id: str,
    lock_id: str,
    home_id: str,
    actor: str,
    role: str,
    action: str,
    outcome: str,
    reason: str | None = None,
    command_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an entry to the lock's log (written when the caller commits)."""
    append(
        session,
        LockLogEntry(
            org_id=org_id,
            lock_id=lock_id,
            home_id=home_id,
            at=utc_now(),
            actor=actor[:100],
            role=role[:20],
            action=action[:32],
            outcome=outcome[:32],
            reason=None if reason is None else reason[:64],
            command_id=command_id,
            detail=json_value(detail),
        ),
    )


def confirmed_state(action: str, outcome: str, reason: str | None) -> str | None:
    """The lock's state a command's result says, if it says one."""
    if outcome == "done":
        return "unlocked" if action == "unlock" else "locked"
    if outcome == "failed" and reason == "jammed":
        return "jammed"
    return None


async def log_command_step(session: AsyncSession, record: CommandRecord, now: datetime) -> None:
    """A command to a lock moved (``record`` as it is now): log the step, and set the
    lock's state when the step confirms one."""
    device = await session.get(Device, (record.org_id, record.device_id))
    role = await session.scalar(select(User.role).where(User.username == record.issued_by))
    lock_log(
        session,
        org_id=record.org_id,
        lock_id=record.device_id,
        home_id=device.home_id if device is not None else "",
        actor=record.issued_by,
        role=role or "system",
        action=record.action,
        outcome=record.state,
        reason=record.reason,
        command_id=record.id,
        detail={"detail": record.detail} if record.detail else None,
    )
    state = confirmed_state(record.action, record.state, record.reason)
    if device is not None and state is not None:
        device.lock_state, device.lock_state_at = state, now


async def log_lock_event(session: AsyncSession, org_id: str, gateway_id: str, event: Event) -> bool:
    """A lock's own event, newly stored: log it and take the state it says. False when
    the event is not one a lock log keeps."""
    action = LOCK_EVENT_ACTIONS.get((event.kind, event.restore))
    if action is None:
        return False
    lock_log(
        session,
        org_id=org_id,
        lock_id=event.device_id,
        home_id=event.home_id,
        actor="lock",
        role="device",
        action=action,
        outcome="reported",
        reason=lock_event_cause(event.detail),
        detail={
            "event_id": event.id,
            "gateway_id": gateway_id,
            "occurred_at": event.occurred_at.isoformat(),
            "detail": event.detail,
        },
    )
    device = await session.get(Device, (org_id, event.device_id))
    if device is None or device.type != DeviceType.DIGITAL_LOCK.value:
        return True
    known = device.lock_state_at
    if known is not None and event.occurred_at < known - STALE:
        return True
    if action in EVENT_STATES:
        device.lock_state = EVENT_STATES[action]
    elif device.lock_state == "jammed":
        device.lock_state = None  # it moves again; whether it is locked, nobody said
    else:
        return True
    device.lock_state_at = await database_now(session)
    return True


async def read_lock_log(
    session: AsyncSession, org_id: str, lock_id: str, *, limit: int, before: int | None
) -> list[LockLogEntry]:
    """The lock's entries, newest first; ``before`` (an entry's number) pages back."""
    query = select(LockLogEntry).where(
        LockLogEntry.org_id == org_id, LockLogEntry.lock_id == lock_id
    )
    if before is not None:
        query = query.where(LockLogEntry.seq < before)
    rows = await session.execute(query.order_by(LockLogEntry.seq.desc()).limit(limit))
    return list(rows.scalars())


async def verify_lock_log(session: AsyncSession, org_id: str, lock_id: str) -> Verdict:
    return await verify_chain(session, org_id, lock_chain(lock_id))
