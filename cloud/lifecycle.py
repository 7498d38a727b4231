"""The alarm lifecycle: an explicit state machine, and who may move an alarm along it.

    new -> claimed -> acknowledged -> assigned -> on_site -> resolved

The assigned staff member accepts (still assigned, now on their way) or declines with a
reason (back to acknowledged, unassigned, and escalated as "declined" so the operators see
it first); where the organisation allows it, staff of the alarm's team take a new or
acknowledged alarm themselves (a night patrol). Staff resolve only their own alarms.

One operator claims an alarm; the others are told who has it. Acknowledging a new alarm
claims it on the way (the console's one button). A supervisor may act on any claimed
alarm. Staff mark themselves on site only for an alarm assigned to them. Resolving takes
an outcome code. Technical alarms resolve themselves when their restore arrives.

``plan`` is pure: it checks a transition and says which columns change. ``apply`` writes
it as a compare-and-set on the alarm's ``version``, so two operators claiming at once
cannot both win, on PostgreSQL or SQLite, and records the transition in the same
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .clock import database_now
from .db import Alarm, AlarmTransition
from .security import Role


class AlarmState(StrEnum):
    NEW = "new"
    CLAIMED = "claimed"
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    ON_SITE = "on_site"
    RESOLVED = "resolved"


class Action(StrEnum):
    CLAIM = "claim"
    RELEASE = "release"
    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"
    ON_SITE = "on_site"
    RESOLVE = "resolve"
    ACCEPT = "accept"
    DECLINE = "decline"
    TAKE = "take"


S = AlarmState
# action -> (the states it may start from, the state it leads to)
TRANSITIONS: dict[Action, tuple[frozenset[AlarmState], AlarmState]] = {
    Action.CLAIM: (frozenset({S.NEW}), S.CLAIMED),
    Action.RELEASE: (frozenset({S.CLAIMED}), S.NEW),
    Action.ACKNOWLEDGE: (frozenset({S.NEW, S.CLAIMED}), S.ACKNOWLEDGED),
    Action.ASSIGN: (frozenset({S.ACKNOWLEDGED, S.ASSIGNED}), S.ASSIGNED),
    Action.ON_SITE: (frozenset({S.ASSIGNED}), S.ON_SITE),
    Action.RESOLVE: (frozenset({S.CLAIMED, S.ACKNOWLEDGED, S.ASSIGNED, S.ON_SITE}), S.RESOLVED),
    Action.ACCEPT: (frozenset({S.ASSIGNED}), S.ASSIGNED),
    Action.DECLINE: (frozenset({S.ASSIGNED}), S.ACKNOWLEDGED),
    Action.TAKE: (frozenset({S.NEW, S.ACKNOWLEDGED}), S.ASSIGNED),
}
OPEN_STATES = tuple(s.value for s in AlarmState if s is not AlarmState.RESOLVED)
# An escalation (cloud/escalation.py) says what was late: it is still waiting while the
# alarm is in the state it was late in, and answered once the alarm moved on.
ESCALATION_WAITS_IN = {
    "unclaimed": AlarmState.NEW.value,
    "unassigned": AlarmState.ACKNOWLEDGED.value,
    "not_on_site": AlarmState.ASSIGNED.value,
    "declined": AlarmState.ACKNOWLEDGED.value,  # the assignee said no: send someone else
}

# Who may take each action (the route checks the role first; this is the rule itself).
ROLES: dict[Action, frozenset[Role]] = {
    Action.CLAIM: frozenset({Role.OPERATOR, Role.SUPERVISOR}),
    Action.RELEASE: frozenset({Role.OPERATOR, Role.SUPERVISOR}),
    Action.ACKNOWLEDGE: frozenset({Role.OPERATOR, Role.SUPERVISOR}),
    Action.ASSIGN: frozenset({Role.OPERATOR, Role.SUPERVISOR}),
    Action.ON_SITE: frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.STAFF}),
    Action.RESOLVE: frozenset({Role.OPERATOR, Role.SUPERVISOR, Role.STAFF}),
    Action.ACCEPT: frozenset({Role.STAFF}),
    Action.DECLINE: frozenset({Role.STAFF}),
    Action.TAKE: frozenset({Role.STAFF}),
}
# What staff may do only to an alarm assigned to them.
_ASSIGNEE_ONLY = frozenset({Action.ON_SITE, Action.RESOLVE, Action.ACCEPT, Action.DECLINE})


class Outcome(StrEnum):
    """How an alarm ended, for the record and the statistics."""

    HELP_GIVEN = "help_given"  # staff helped the resident
    AMBULANCE = "ambulance"  # emergency services called
    RESOLVED_BY_PHONE = "resolved_by_phone"  # talked with the resident, no visit needed
    FALSE_ALARM = "false_alarm"  # pressed by mistake
    TEST = "test"  # a test alarm
    TECHNICAL_FIXED = "technical_fixed"  # a technical fault dealt with
    RESTORED = "restored"  # a technical alarm whose device came back by itself
    OTHER = "other"


SYSTEM = "system"  # who acts when no person does: restores, escalations


class TransitionError(Exception):
    """The alarm is not in a state, or not held by someone, that allows the action."""


@dataclass(frozen=True, slots=True)
class Actor:
    username: str
    role: Role


@dataclass(frozen=True, slots=True)
class Plan:
    """What a transition changes, and what the history says of it."""

    to_state: AlarmState
    changes: dict[str, Any]
    detail: dict[str, Any] = field(default_factory=dict)


def describe(alarm: Alarm) -> str:
    state = alarm.state
    if state == S.RESOLVED:
        return f"alarm {alarm.id} is resolved ({alarm.outcome}, by {alarm.resolved_by})"
    if state == S.NEW:
        return f"alarm {alarm.id} is new"
    held = f", claimed by {alarm.claimed_by}" if alarm.claimed_by else ""
    assigned = f", assigned to {alarm.assigned_to}" if alarm.assigned_to else ""
    return f"alarm {alarm.id} is {state}{held}{assigned}"


def plan(
    alarm: Alarm,
    action: Action,
    actor: Actor,
    now: datetime,
    *,
    assignee: str | None = None,
    outcome: Outcome | None = None,
    note: str | None = None,
) -> Plan:
    """Check one transition against the state machine and the rules of who may act."""
    sources, target = TRANSITIONS[action]
    if actor.role not in ROLES[action]:
        raise TransitionError(f"a {actor.role.value} cannot {action.value} an alarm")
    if AlarmState(alarm.state) not in sources:
        allowed = " or ".join(sorted(s.value for s in sources))
        raise TransitionError(f"cannot {action.value}: {describe(alarm)} (needs {allowed})")
    supervisor = actor.role is Role.SUPERVISOR
    holder = alarm.claimed_by
    if holder and holder != actor.username and not supervisor and actor.role is not Role.STAFF:
        raise TransitionError(f"cannot {action.value}: {describe(alarm)}")
    if (
        actor.role is Role.STAFF
        and action in _ASSIGNEE_ONLY
        and alarm.assigned_to != actor.username
    ):
        raise TransitionError(f"cannot {action.value}: {describe(alarm)}, not to you")
    changes: dict[str, Any] = {"state": target.value, "updated_at": now}
    detail: dict[str, Any] = {}
    if action is Action.CLAIM or (action is Action.ACKNOWLEDGE and not holder):
        changes |= {"claimed_by": actor.username, "claimed_at": now}
    if action is Action.RELEASE:
        changes |= {"claimed_by": None, "claimed_at": None}
    elif action is Action.ACKNOWLEDGE:
        changes |= {"acknowledged_by": actor.username, "acknowledged_at": now}
    elif action is Action.ASSIGN:
        if not assignee:
            raise TransitionError("assign needs the staff member to send")
        changes |= {
            "assigned_to": assignee,
            "assigned_at": now,
            "accepted_at": None,
            "on_site_at": None,
        }
        detail["assigned_to"] = assignee
        if alarm.assigned_to and alarm.assigned_to != assignee:
            detail["instead_of"] = alarm.assigned_to
    elif action is Action.ON_SITE:
        changes |= {"on_site_at": now}
    elif action is Action.ACCEPT:
        if alarm.accepted_at is not None:
            raise TransitionError(f"cannot accept: {describe(alarm)}, accepted already")
        changes |= {"accepted_at": now}
    elif action is Action.DECLINE:
        if not note:
            raise TransitionError("decline needs a reason")
        changes |= {
            "assigned_to": None,
            "assigned_at": None,
            "accepted_at": None,
            "escalation": "declined",
            "escalated_at": now,
            "escalation_level": (alarm.escalation_level or 0) + 1,
        }
        detail["declined_by"] = actor.username
    elif action is Action.TAKE:
        changes |= {
            "assigned_to": actor.username,
            "assigned_at": now,
            "accepted_at": now,
            "on_site_at": None,
        }
        detail["assigned_to"] = actor.username
    elif action is Action.RESOLVE:
        if outcome is None:
            raise TransitionError("resolve needs an outcome")
        changes |= {
            "resolved_by": actor.username,
            "resolved_at": now,
            "outcome": outcome.value,
            "resolution_note": note,
        }
        detail["outcome"] = outcome.value
    if note:
        detail["note"] = note
    return Plan(target, changes, detail)


async def get_alarm(session: AsyncSession, org_id: str, alarm_id: int) -> Alarm | None:
    found = await session.execute(
        select(Alarm)
        .where(Alarm.id == alarm_id, Alarm.org_id == org_id)
        .execution_options(populate_existing=True)
    )
    return found.scalar_one_or_none()


async def apply(
    session: AsyncSession,
    org_id: str,
    alarm_id: int,
    action: Action,
    actor: Actor,
    *,
    assignee: str | None = None,
    outcome: Outcome | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Alarm | None:
    """Move an alarm along, and record it; None if the organisation has no such alarm.
    Raises TransitionError when the state or the holder does not allow it, including
    when someone else acted first. The caller commits."""
    alarm = await get_alarm(session, org_id, alarm_id)
    if alarm is None:
        return None
    now = now or await database_now(session)
    step = plan(alarm, action, actor, now, assignee=assignee, outcome=outcome, note=note)
    await cas(session, alarm, action.value, actor.username, step, now)
    return alarm


async def cas(
    session: AsyncSession, alarm: Alarm, action: str, by: str, step: Plan, now: datetime
) -> None:
    """Write a planned transition if nobody changed the alarm since it was read."""
    from_state = alarm.state
    result = await session.execute(
        update(Alarm)
        .where(Alarm.id == alarm.id, Alarm.version == alarm.version)
        .values(**step.changes, version=alarm.version + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        current = await get_alarm(session, alarm.org_id, alarm.id)
        assert current is not None
        raise TransitionError(f"cannot {action}: {describe(current)}")
    await record(session, alarm, action, by, now, step.detail, from_state, step.to_state.value)


async def record(
    session: AsyncSession,
    alarm: Alarm,
    action: str,
    by: str,
    at: datetime,
    detail: dict[str, Any],
    from_state: str,
    to_state: str,
) -> None:
    """Add a step to the alarm's history, and read the alarm back as it now is."""
    session.add(
        AlarmTransition(
            alarm_id=alarm.id,
            org_id=alarm.org_id,
            action=action,
            from_state=from_state,
            to_state=to_state,
            by=by,
            at=at,
            detail=detail,
        )
    )
    await session.flush()
    await session.refresh(alarm)


async def resolve_by_system(
    session: AsyncSession, alarm: Alarm, outcome: Outcome, now: datetime
) -> None:
    """Resolved by no one in particular: a technical alarm whose cause went away."""
    await session.flush()  # pending changes to the alarm first; the resolution compares versions
    await session.refresh(alarm)
    changes = {
        "state": AlarmState.RESOLVED.value,
        "updated_at": now,
        "resolved_by": SYSTEM,
        "resolved_at": now,
        "outcome": outcome.value,
    }
    step = Plan(AlarmState.RESOLVED, changes, {"outcome": outcome.value})
    await cas(session, alarm, Action.RESOLVE.value, SYSTEM, step, now)


async def recent_of_resident(
    session: AsyncSession, alarm: Alarm, *, days: int = 30, limit: int = 20
) -> list[Alarm]:
    """The resident's other alarms since ``days`` before this one, newest first."""
    if alarm.resident_id is None:
        return []
    rows = await session.execute(
        select(Alarm)
        .where(
            Alarm.org_id == alarm.org_id,
            Alarm.resident_id == alarm.resident_id,
            Alarm.id != alarm.id,
            Alarm.received_at >= alarm.received_at - timedelta(days=days),
        )
        .order_by(Alarm.received_at.desc(), Alarm.id.desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def history(session: AsyncSession, alarm_id: int) -> list[AlarmTransition]:
    rows = await session.execute(
        select(AlarmTransition)
        .where(AlarmTransition.alarm_id == alarm_id)
        .order_by(AlarmTransition.at, AlarmTransition.id)
    )
    return list(rows.scalars())
