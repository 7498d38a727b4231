"""Response statistics: how fast alarms are claimed, staff sent and on site.

Contracts ask for answers within 30-60 s; UK codes ask that 97.5 % of calls are answered
within 60 s and 99 % within 180 s. Times are counted from when the service received the
alarm to the first time an operator took it (claim, or acknowledge straight from new),
to the first assignment, and to the first report of staff on site. An alarm not yet
claimed counts against the shares, as a caller still waiting does. A test alarm (a
device in test, cloud/alarms.py) is not counted at all.
"""

from __future__ import annotations

import statistics as stats
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from devices import Priority

from .db import Alarm, AlarmTransition, Organisation, Team, User

CLAIMING = ("claim", "acknowledge")
WITHIN_S = (60, 180)


@dataclass(slots=True)
class Timeline:
    received_at: datetime
    claimed_at: datetime | None
    claimed_by: str | None
    assigned_at: datetime | None
    on_site_at: datetime | None

    def seconds(self, at: datetime | None) -> float | None:
        return None if at is None else max(0.0, (at - self.received_at).total_seconds())


def _summary(rows: list[Timeline], now: datetime) -> dict[str, Any]:
    to_claim = [s for r in rows if (s := r.seconds(r.claimed_at)) is not None]
    to_assign = [s for r in rows if (s := r.seconds(r.assigned_at)) is not None]
    to_site = [s for r in rows if (s := r.seconds(r.on_site_at)) is not None]
    out: dict[str, Any] = {
        "alarms": len(rows),
        "claimed": len(to_claim),
        "median_s_to_claim": _median(to_claim),
        "p90_s_to_claim": _p90(to_claim),
        "median_s_to_assign": _median(to_assign),
        "median_s_to_on_site": _median(to_site),
    }
    for limit in WITHIN_S:
        # An alarm still waiting counts as missed once it has waited longer than the limit;
        # one that is younger than the limit and unclaimed is left out (it may yet be met).
        decided = [
            r
            for r in rows
            if r.claimed_at is not None or (now - r.received_at).total_seconds() > limit
        ]
        met = sum(1 for r in decided if (s := r.seconds(r.claimed_at)) is not None and s <= limit)
        out[f"claimed_within_{limit}s_share"] = round(met / len(decided), 4) if decided else None
    return out


def _median(values: list[float]) -> float | None:
    return round(stats.median(values), 1) if values else None


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(stats.quantiles(values, n=10, method="inclusive")[-1], 1)


async def response_statistics(
    session: AsyncSession,
    org_id: str,
    start: datetime,
    end: datetime,
    now: datetime,
    priorities: list[Priority] | None = None,
    *,
    time_zone: ZoneInfo | None = None,
    teams: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Totals, per day (in ``time_zone``, UTC by default), per operator and per team
    (``teams``: an operator's team's name) for alarms received in [start, end)."""
    zone = time_zone or ZoneInfo("UTC")
    first = (
        select(AlarmTransition.alarm_id, func.min(AlarmTransition.id).label("first_id"))
        .where(AlarmTransition.org_id == org_id, AlarmTransition.action.in_(CLAIMING))
        .group_by(AlarmTransition.alarm_id)
        .subquery()
    )
    claim = (
        select(AlarmTransition.alarm_id, AlarmTransition.at, AlarmTransition.by)
        .join(first, AlarmTransition.id == first.c.first_id)
        .subquery()
    )
    assign = (
        select(AlarmTransition.alarm_id, func.min(AlarmTransition.at).label("at"))
        .where(AlarmTransition.org_id == org_id, AlarmTransition.action == "assign")
        .group_by(AlarmTransition.alarm_id)
        .subquery()
    )
    site = (
        select(AlarmTransition.alarm_id, func.min(AlarmTransition.at).label("at"))
        .where(AlarmTransition.org_id == org_id, AlarmTransition.action == "on_site")
        .group_by(AlarmTransition.alarm_id)
        .subquery()
    )
    query = (
        select(Alarm.received_at, claim.c.at, claim.c.by, assign.c.at, site.c.at)
        .outerjoin(claim, claim.c.alarm_id == Alarm.id)
        .outerjoin(assign, assign.c.alarm_id == Alarm.id)
        .outerjoin(site, site.c.alarm_id == Alarm.id)
        .where(Alarm.org_id == org_id, Alarm.received_at >= start, Alarm.received_at < end)
        .where(Alarm.test.is_(False))  # a technician's test is no call anybody waited on
    )
    if priorities:
        query = query.where(Alarm.priority.in_([p.value for p in priorities]))
    rows = [Timeline(*row) for row in (await session.execute(query)).all()]
    by_day: dict[str, list[Timeline]] = defaultdict(list)
    by_operator: dict[str, list[Timeline]] = defaultdict(list)
    by_team: dict[str, list[Timeline]] = defaultdict(list)
    for row in rows:
        by_day[row.received_at.astimezone(zone).date().isoformat()].append(row)
        if row.claimed_by:
            by_operator[row.claimed_by].append(row)
            team = (teams or {}).get(row.claimed_by)
            if team:
                by_team[team].append(row)
    return {
        "from": start,
        "to": end,
        "total": _summary(rows, now),
        "days": [{"day": day, **_summary(r, now)} for day, r in sorted(by_day.items())],
        "time_zone": zone.key,
        "operators": [
            {"operator": who, **_summary(r, now)} for who, r in sorted(by_operator.items())
        ],
        "teams": [{"team": name, **_summary(r, now)} for name, r in sorted(by_team.items())],
    }


async def organisation_view(session: AsyncSession, org_id: str) -> tuple[ZoneInfo, dict[str, str]]:
    """The organisation's time zone, and each of its people's team by name."""
    org = await session.get(Organisation, org_id)
    zone = ZoneInfo(org.time_zone if org is not None else "UTC")
    rows = await session.execute(
        select(User.username, Team.name)
        .join(Team, Team.id == User.team_id)
        .where(User.org_id == org_id)
    )
    return zone, {username: team for username, team in rows.all()}
