"""Keyless entry: who may open which door, when, and the door locked again afterwards.

Staff open a resident's door from their phone only

- for an alarm assigned to them (assigned or on site), at that alarm's home, or
- for a visit of theirs (or of their team, when it names nobody yet) at that home, from
  the organisation's margin before its start until the margin after its end (15 min by
  default: ``Organisation.visit_margin_s``),

with a lock of that home, and while the resident has consented to the lock service.
Locking follows the same rule, and is also allowed for the margin after the alarm is
resolved (staff lock as they leave). The check is made here, in the dispatch service,
before anything is signed: the gateway executes only the signed command that follows
(cloud/commands.py), valid for ``DOOR_TTL_S`` seconds.

Every attempt is logged, granted or refused with its reason, in the audit log (and the
lock log). A granted unlock opens a ``DoorOpening`` that ``DoorWatch`` follows: once its
visit (and margin) is over or its alarm resolved, a door whose latest confirmed command
is not a lock is locked by command; a door still not confirmed locked ``door_grace_s``
after that, or one whose home has a door contact its gateway last reported open
(cloud/devicestate.py), raises ``door_left_open`` in the operators' queue.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices import EVENT_KINDS, DeviceType, Event

from .alarms import record_event
from .audit import audit
from .clock import Clock, database_now, pause
from .commands import CommandRefused, CommandService, CommandState, new_command_id
from .db import (
    Alarm,
    CommandRecord,
    Consent,
    Device,
    DoorOpening,
    Organisation,
    Resident,
    User,
    Visit,
)
from .hub import AlarmHub
from .lifecycle import SYSTEM, AlarmState
from .locklog import lock_log
from .schemas import AlarmChange, AlarmPublic, CommandChange, CommandPublic

log = logging.getLogger("trygg.cloud.doors")

DOOR_TTL_S = 10  # a door command is valid this long: no later opening from a late message
LOCK_SERVICE = "lock"
DoorAction = Literal["unlock", "lock"]
_OPEN_ALARM = (AlarmState.ASSIGNED.value, AlarmState.ON_SITE.value)


class DoorRefused(Exception):
    """The dispatch service will not open (or lock) this door for this person: why."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class DoorGrant:
    """What a granted attempt stands on: the lock, and the alarm or visit."""

    lock: Device
    alarm: Alarm | None
    visit: Visit | None
    resident_id: str | None


def visit_window(visit: Visit, margin_s: int) -> tuple[datetime, datetime]:
    margin = timedelta(seconds=margin_s)
    return visit.starts_at - margin, visit.ends_at + margin


def visit_is_mine(visit: Visit, user: User) -> bool:
    if visit.staff is not None:
        return visit.staff == user.username
    return visit.team_id is not None and visit.team_id == user.team_id


async def has_consent(
    session: AsyncSession, org_id: str, resident_id: str, service: str, now: datetime
) -> bool:
    found = await session.scalar(
        select(Consent.id)
        .where(
            Consent.org_id == org_id,
            Consent.resident_id == resident_id,
            Consent.service == service,
            Consent.valid_from <= now,
            (Consent.withdrawn_at.is_(None)) | (Consent.withdrawn_at > now),
        )
        .limit(1)
    )
    return found is not None


async def home_locks(session: AsyncSession, org_id: str, home_id: str) -> list[Device]:
    rows = await session.execute(
        select(Device)
        .where(
            Device.org_id == org_id,
            Device.home_id == home_id,
            Device.type == DeviceType.DIGITAL_LOCK.value,
        )
        .order_by(Device.id)
    )
    return list(rows.scalars())


async def check(
    session: AsyncSession,
    user: User,
    org: Organisation,
    lock_id: str,
    action: DoorAction,
    now: datetime,
    *,
    alarm_id: int | None,
    visit_id: int | None,
) -> DoorGrant:
    """The rule (the module's description), for one attempt. Raises DoorRefused."""
    lock = await session.get(Device, (user.org_id, lock_id))
    if lock is None or lock.type != DeviceType.DIGITAL_LOCK.value:
        raise DoorRefused(404, "no_such_lock", f"No lock {lock_id} in your organisation")
    margin = timedelta(seconds=org.visit_margin_s)
    alarm = visit = None
    if alarm_id is not None:
        alarm = await session.get(Alarm, alarm_id)
        if alarm is None or alarm.org_id != user.org_id or alarm.assigned_to != user.username:
            raise DoorRefused(403, "not_assigned", f"Alarm {alarm_id} is not assigned to you")
        if alarm.state not in _OPEN_ALARM:
            resolved_at = alarm.resolved_at
            late_lock = (
                action == "lock"
                and alarm.state == AlarmState.RESOLVED.value
                and resolved_at is not None
                and now <= resolved_at + margin
            )
            if not late_lock:
                reason = (
                    "alarm_resolved"
                    if alarm.state == AlarmState.RESOLVED.value
                    else ("not_assigned")
                )
                raise DoorRefused(403, reason, f"Alarm {alarm_id} is {alarm.state}")
        home_id, resident_id = alarm.home_id, alarm.resident_id
    elif visit_id is not None:
        visit = await session.get(Visit, visit_id)
        if (
            visit is None
            or visit.org_id != user.org_id
            or visit.cancelled_at is not None
            or not visit_is_mine(visit, user)
        ):
            raise DoorRefused(403, "not_your_visit", f"Visit {visit_id} is not yours")
        opens, closes = visit_window(visit, org.visit_margin_s)
        if now < opens:
            raise DoorRefused(
                403, "visit_not_begun", f"Visit {visit_id}'s door opens at {opens:%H:%M} UTC"
            )
        if now > closes:
            raise DoorRefused(403, "visit_ended", f"Visit {visit_id} ended at {closes:%H:%M} UTC")
        home_id, resident_id = visit.home_id, visit.resident_id
    else:
        raise DoorRefused(422, "no_reason_given", "Say which alarm or visit: alarm_id or visit_id")
    if lock.home_id != home_id:
        raise DoorRefused(403, "wrong_home", f"Lock {lock_id} is not at that home")
    if action == "unlock":
        residents = (
            [resident_id]
            if resident_id is not None
            else list(
                (
                    await session.execute(
                        select(Resident.id).where(
                            Resident.org_id == user.org_id, Resident.home_id == home_id
                        )
                    )
                ).scalars()
            )
        )
        consented = [
            r for r in residents if await has_consent(session, user.org_id, r, LOCK_SERVICE, now)
        ]
        if not residents or len(consented) != len(residents):
            raise DoorRefused(
                403, "no_consent", "The resident has not consented to keyless entry (any more)"
            )
    return DoorGrant(lock, alarm, visit, resident_id)


FINAL = frozenset(
    {CommandState.DONE, CommandState.FAILED, CommandState.REFUSED, CommandState.EXPIRED}
)


@dataclass
class DoorService:
    """Staff's door commands: the check, the signed command, its result within seconds."""

    sessions: async_sessionmaker[AsyncSession]
    commands: CommandService
    answer_within_s: float = 4.0
    clock: Clock = database_now

    async def act(
        self,
        session: AsyncSession,
        user: User,
        lock_id: str,
        action: DoorAction,
        *,
        alarm_id: int | None,
        visit_id: int | None,
    ) -> CommandPublic:
        """Check, log, sign and send; wait up to ``answer_within_s`` for the lock's answer.
        Raises DoorRefused (logged and committed first)."""
        org = await session.get(Organisation, user.org_id)
        assert org is not None
        now = await self.clock(session)
        context: dict[str, object] = {"alarm": alarm_id, "visit": visit_id, "action": action}
        try:
            grant = await check(
                session, user, org, lock_id, action, now, alarm_id=alarm_id, visit_id=visit_id
            )
        except DoorRefused as refusal:  # nothing was written: the check only reads
            await self._log_refusal(session, user, lock_id, refusal, context)
            await session.commit()
            log.warning(
                "door %s %s refused for %s: %s", lock_id, action, user.username, refusal.reason
            )
            raise
        command_id = new_command_id()
        # Logged and followed in the same commit as the command itself.
        audit(
            session,
            user,
            f"door.{action}",
            f"lock:{lock_id}",
            context | {"command": command_id, "home": grant.lock.home_id},
        )
        lock_log(
            session,
            org_id=user.org_id,
            lock_id=lock_id,
            home_id=grant.lock.home_id,
            actor=user.username,
            role=user.role,
            action=action,
            outcome="granted",
            command_id=command_id,
            detail={"alarm": alarm_id, "visit": visit_id},
        )
        if action == "unlock":
            session.add(
                DoorOpening(
                    org_id=user.org_id,
                    lock_id=lock_id,
                    home_id=grant.lock.home_id,
                    opened_by=user.username,
                    opened_at=now,
                    command_id=command_id,
                    alarm_id=alarm_id,
                    visit_id=visit_id,
                )
            )
        async with self.commands.hub.subscribe(user.org_id) as changes:
            try:
                command = await self.commands.create(
                    session,
                    user,
                    grant.lock.gateway_id,
                    lock_id,
                    action,
                    DOOR_TTL_S,
                    command_id=command_id,
                )
            except CommandRefused as exc:
                await session.rollback()  # not the granted entry, nor the opening
                await session.refresh(user)
                reason = "commands_off" if exc.status == 503 else "lock_unavailable"
                unavailable = DoorRefused(503 if exc.status == 503 else 409, reason, exc.detail)
                await self._log_refusal(session, user, lock_id, unavailable, context)
                await session.commit()
                raise unavailable from None
            return await self._answer(session, command, changes)

    async def _answer(
        self,
        session: AsyncSession,
        command: CommandPublic,
        changes: asyncio.Queue[CommandChange | None],
    ) -> CommandPublic:
        """The command once final, or as it is after ``answer_within_s``."""
        if CommandState(command.state) in FINAL:
            return command
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.answer_within_s
        while (left := deadline - loop.time()) > 0:
            try:
                change = await asyncio.wait_for(changes.get(), left)
            except TimeoutError:
                break
            if change is None:
                break
            seen = change.command
            if seen.id == command.id:
                command = seen
                if CommandState(seen.state) in FINAL:
                    return seen
        # Maybe another replica took the result: read the record.
        record = await session.get(CommandRecord, command.id, populate_existing=True)
        return CommandPublic.model_validate(record) if record is not None else command

    @staticmethod
    async def _log_refusal(
        session: AsyncSession,
        user: User,
        lock_id: str,
        refusal: DoorRefused,
        context: dict[str, object],
    ) -> None:
        detail = context | {"reason": refusal.reason, "message": refusal.message}
        audit(session, user, "door.refused", f"lock:{lock_id}", detail)
        lock = await session.get(Device, (user.org_id, lock_id))
        if lock is None or lock.type != DeviceType.DIGITAL_LOCK.value:
            return  # no lock of the organisation: no lock log to write it in
        lock_log(
            session,
            org_id=user.org_id,
            lock_id=lock_id,
            home_id=lock.home_id,
            actor=user.username,
            role=user.role,
            action=str(context["action"]),
            outcome="refused",
            reason=refusal.reason,
            detail={
                "alarm": context["alarm"],
                "visit": context["visit"],
                "message": refusal.message,
            },
        )


# --- after the visit --------------------------------------------------------------------


def _system(org_id: str) -> User:
    """Who locks a door after a visit: the dispatch service itself (never stored)."""
    return User(org_id=org_id, username=SYSTEM, role=SYSTEM)


@dataclass
class DoorWatch:
    """Locks doors whose visit or alarm is over, and raises door_left_open for one that
    stays unlocked past the grace (see the module's description)."""

    sessions: async_sessionmaker[AsyncSession]
    commands: CommandService
    hub: AlarmHub
    clock: Clock = database_now
    relocks: int = 0
    left_open: int = 0
    _sweeping: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def sweep(self) -> None:
        async with self._sweeping, self.sessions() as session:
            now = await self.clock(session)
            rows = await session.execute(
                select(DoorOpening).where(DoorOpening.closed_at.is_(None)).order_by(DoorOpening.id)
            )
            for opening in list(rows.scalars()):
                await self._follow(session, opening, now)

    async def _ended_at(self, session: AsyncSession, opening: DoorOpening) -> datetime | None:
        """When the visit (with its margin) or the alarm ended; None while it goes on."""
        org = await session.get(Organisation, opening.org_id)
        assert org is not None
        if opening.visit_id is not None:
            visit = await session.get(Visit, opening.visit_id)
            if visit is None:
                return opening.opened_at
            if visit.cancelled_at is not None:
                return visit.cancelled_at
            return visit_window(visit, org.visit_margin_s)[1]
        alarm = await session.get(Alarm, opening.alarm_id) if opening.alarm_id else None
        if alarm is None:
            return opening.opened_at
        if alarm.state == AlarmState.RESOLVED.value:
            return alarm.resolved_at
        if alarm.assigned_to != opening.opened_by:
            return alarm.updated_at  # given to someone else: they open it again themselves
        return None

    async def _locked_since(self, session: AsyncSession, opening: DoorOpening) -> bool:
        """Whether the lock's latest finished command since the opening is a done lock."""
        latest = await session.scalar(
            select(CommandRecord)
            .where(
                CommandRecord.org_id == opening.org_id,
                CommandRecord.device_id == opening.lock_id,
                CommandRecord.issued_at >= opening.opened_at,
                CommandRecord.state == CommandState.DONE.value,
            )
            .order_by(CommandRecord.issued_at.desc(), CommandRecord.updated_at.desc())
            .limit(1)
        )
        return latest is not None and latest.action == "lock"

    async def _open_contacts(self, session: AsyncSession, opening: DoorOpening) -> list[str]:
        """The home's door and window contacts whose gateway last said they are open."""
        rows = await session.scalars(
            select(Device.id).where(
                Device.org_id == opening.org_id,
                Device.home_id == opening.home_id,
                Device.type == DeviceType.DOOR_CONTACT.value,
                Device.contact == "open",
            )
        )
        return sorted(rows)

    async def _follow(self, session: AsyncSession, opening: DoorOpening, now: datetime) -> None:
        ended = await self._ended_at(session, opening)
        if ended is None or now < ended:
            return
        locked = await self._locked_since(session, opening)
        if locked and not await self._open_contacts(session, opening):
            await self._close(session, opening, now, "locked")
            return
        org = await session.get(Organisation, opening.org_id)
        assert org is not None
        lock = await session.get(Device, (opening.org_id, opening.lock_id))
        if opening.relock_at is None:
            opening.relock_at = now
            if lock is not None and not locked:
                try:
                    command = await self.commands.create(
                        session,
                        _system(opening.org_id),
                        lock.gateway_id,
                        lock.id,
                        "lock",
                        DOOR_TTL_S,
                    )
                except CommandRefused as exc:
                    log.warning("door %s: cannot lock it: %s", opening.lock_id, exc.detail)
                else:
                    opening.relock_command_id = command.id
                    self.relocks += 1
                    log.info(
                        "door %s locked by command %s after its visit or alarm",
                        opening.lock_id,
                        command.id,
                    )
            await session.commit()
            return
        if now < opening.relock_at + timedelta(seconds=org.door_grace_s):
            return
        contacts = await self._open_contacts(session, opening)
        alarm = await self._raise_left_open(session, opening, lock, now, locked, contacts)
        opening.left_open_alarm_id = alarm.id if alarm is not None else None
        await self._close(session, opening, now, "left_open")
        if alarm is not None:
            self.left_open += 1
            self.hub.publish(
                opening.org_id, AlarmChange(type="created", alarm=AlarmPublic.model_validate(alarm))
            )

    async def _raise_left_open(
        self,
        session: AsyncSession,
        opening: DoorOpening,
        lock: Device | None,
        now: datetime,
        locked: bool,
        contacts: list[str],
    ) -> Alarm | None:
        kind = EVENT_KINDS["door_left_open"]
        event = Event(
            id=f"door-left-open:{opening.id}",
            kind=kind.name,
            priority=kind.priority,
            device_id=opening.lock_id,
            device_type=DeviceType.DIGITAL_LOCK.value,
            home_id=opening.home_id,
            resident_id=lock.resident_id if lock is not None else None,
            occurred_at=now,
            detail={
                "opened_by": opening.opened_by,
                "opened_at": opening.opened_at.isoformat(),
                "relock_command": opening.relock_command_id,
                # Why: the lock never confirmed it locked, a contact says the door is open.
                "locked": locked,
                "contacts_open": contacts,
            },
        )
        gateway = lock.gateway_id if lock is not None else SYSTEM
        intake = await record_event(session, opening.org_id, gateway, event, now=now)
        log.warning(
            "door %s left %s after its visit or alarm",
            opening.lock_id,
            f"open ({', '.join(contacts)})" if contacts else "unlocked",
        )
        return intake.alarm

    @staticmethod
    async def _close(session: AsyncSession, opening: DoorOpening, now: datetime, how: str) -> None:
        opening.closed_at = now
        opening.closed_how = how
        await session.commit()

    async def run(self, every_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # a database outage must not end the watch for good
                log.exception("door watch sweep failed; trying again")
            await pause(every_s, stop)
