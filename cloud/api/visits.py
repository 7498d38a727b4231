"""Planned visits (supervisors and administrators plan them; cloud/visits.py imports a
planning system's file) and residents' consents to each service (cloud/doors.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..audit import audit
from ..away import tracking_withdrawn
from ..clock import database_now
from ..db import Consent, Home, Resident, Team, User, Visit
from ..doors import has_consent
from ..security import Role
from ..visits import MAX_VISIT
from .deps import ServicesDep, SessionDep, require_role, resident_of
from .strict import TEXT_BODY_BYTES, StrictRoute

router = APIRouter(tags=["visits"], route_class=StrictRoute)

_R = Role
Planner = Annotated[User, Depends(require_role(_R.SUPERVISOR, _R.ADMIN))]
VisitReader = Annotated[User, Depends(require_role(_R.SUPERVISOR, _R.ADMIN, _R.OPERATOR))]
ConsentRecorder = Annotated[User, Depends(require_role(_R.SUPERVISOR, _R.ADMIN))]
ConsentReader = Annotated[User, Depends(require_role(_R.SUPERVISOR, _R.ADMIN, _R.OPERATOR))]
VisitId = Annotated[int, Path(ge=1, le=2**31 - 1)]
ResidentId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class VisitIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    home_id: str = Field(pattern=_ID)
    resident_id: str | None = Field(default=None, pattern=_ID)
    staff: str | None = Field(default=None, min_length=1, max_length=100)
    team_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    starts_at: datetime
    ends_at: datetime
    note: str = Field(default="", max_length=500)
    external_id: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _sane(self) -> VisitIn:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("starts_at and ends_at need a time zone (2026-12-03T08:00+01:00)")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - self.starts_at > MAX_VISIT:
            raise ValueError("a visit is at most 24 hours")
        if self.staff is None and self.team_id is None:
            raise ValueError("name the staff member or the team")
        return self


class VisitOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    home_id: str
    resident_id: str | None
    staff: str | None
    team_id: int | None
    starts_at: datetime
    ends_at: datetime
    note: str
    external_id: str | None
    created_by: str
    updated_at: datetime
    cancelled_at: datetime | None


async def _check_visit(session: AsyncSession, org_id: str, body: VisitIn) -> None:
    problems = []
    if await session.get(Home, (org_id, body.home_id)) is None:
        problems.append(f"home_id: no home {body.home_id}")
    if body.resident_id is not None:
        resident = await session.get(Resident, (org_id, body.resident_id))
        if resident is None or resident.home_id != body.home_id:
            problems.append(f"resident_id: no resident {body.resident_id} at {body.home_id}")
    if body.staff is not None:
        staff = await session.scalar(
            select(User.id).where(
                User.org_id == org_id, User.username == body.staff, User.role == _R.STAFF.value
            )
        )
        if staff is None:
            problems.append(f"staff: no staff member {body.staff}")
    if body.team_id is not None:
        team = await session.get(Team, body.team_id)
        if team is None or team.org_id != org_id:
            problems.append(f"team_id: no team {body.team_id}")
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail="; ".join(problems))


async def _visit(session: AsyncSession, user: User, visit_id: int) -> Visit:
    visit = await session.get(Visit, visit_id)
    if visit is None or visit.org_id != user.org_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No visit {visit_id}")
    return visit


@router.get("/visits")
async def list_visits(
    user: VisitReader,
    session: SessionDep,
    starts_from: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query()] = None,
    staff: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
) -> list[VisitOut]:
    """Visits that touch [from, until) (default: from now for a day), in order."""
    now = await database_now(session)
    begins = starts_from or now
    ends = until or begins + timedelta(days=1)
    if begins.tzinfo is None or ends.tzinfo is None:
        raise HTTPException(422, detail="from and until need a time zone")
    query = select(Visit).where(
        Visit.org_id == user.org_id, Visit.starts_at < ends, Visit.ends_at > begins
    )
    if staff is not None:
        query = query.where(Visit.staff == staff)
    rows = await session.execute(query.order_by(Visit.starts_at, Visit.id).limit(limit))
    return [VisitOut.model_validate(v) for v in rows.scalars()]


@router.post("/visits", status_code=status.HTTP_201_CREATED, max_body_size=TEXT_BODY_BYTES)
async def create_visit(body: VisitIn, user: Planner, session: SessionDep) -> VisitOut:
    await _check_visit(session, user.org_id, body)
    now = await database_now(session)
    visit = Visit(
        org_id=user.org_id,
        **body.model_dump(),
        created_by=user.username,
        created_at=now,
        updated_at=now,
        cancelled_at=None,
    )
    session.add(visit)
    await session.flush()
    audit(session, user, "visit.create", f"visit:{visit.id}", {"home": body.home_id})
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise HTTPException(409, detail=f"There is already a visit {body.external_id}") from None
    return VisitOut.model_validate(visit)


@router.put("/visits/{visit_id}", max_body_size=TEXT_BODY_BYTES)
async def change_visit(
    visit_id: VisitId, body: VisitIn, user: Planner, session: SessionDep
) -> VisitOut:
    """Replace the visit's plan (a cancelled one stays cancelled)."""
    visit = await _visit(session, user, visit_id)
    await _check_visit(session, user.org_id, body)
    for key, value in body.model_dump().items():
        setattr(visit, key, value)
    visit.updated_at = await database_now(session)
    audit(session, user, "visit.update", f"visit:{visit_id}", {"home": body.home_id})
    await session.commit()
    return VisitOut.model_validate(visit)


@router.delete("/visits/{visit_id}")
async def cancel_visit(visit_id: VisitId, user: Planner, session: SessionDep) -> VisitOut:
    """Cancel it: its door no longer opens for it (kept, for the record)."""
    visit = await _visit(session, user, visit_id)
    if visit.cancelled_at is None:
        visit.cancelled_at = visit.updated_at = await database_now(session)
        audit(session, user, "visit.cancel", f"visit:{visit_id}")
        await session.commit()
    return VisitOut.model_validate(visit)


# --- consent ----------------------------------------------------------------------------

Service = Literal["lock", "camera", "position"]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    service: Service
    # The resident themselves, a relative who lives with them (the camera law asks for
    # both), or a legal representative (god man, förvaltare).
    given_by: Literal["resident", "cohabitant", "representative"]
    given_by_name: str | None = Field(default=None, max_length=200)
    valid_from: datetime | None = None  # default: now

    @model_validator(mode="after")
    def _aware(self) -> ConsentIn:
        if self.valid_from is not None and self.valid_from.tzinfo is None:
            raise ValueError("valid_from needs a time zone")
        return self


class ConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    resident_id: str
    service: str
    given_by: str
    given_by_name: str | None
    recorded_by: str
    recorded_at: datetime
    valid_from: datetime
    withdrawn_at: datetime | None
    withdrawn_by: str | None


@router.get("/residents/{resident_id}/consents")
async def list_consents(
    resident_id: ResidentId, user: ConsentReader, session: SessionDep
) -> list[ConsentOut]:
    await resident_of(session, user, resident_id)
    rows = await session.execute(
        select(Consent)
        .where(Consent.org_id == user.org_id, Consent.resident_id == resident_id)
        .order_by(Consent.recorded_at, Consent.id)
    )
    audit(session, user, "consent.read", f"resident:{resident_id}")
    await session.commit()
    return [ConsentOut.model_validate(c) for c in rows.scalars()]


@router.post("/residents/{resident_id}/consents", status_code=status.HTTP_201_CREATED)
async def record_consent(
    resident_id: ResidentId, body: ConsentIn, user: ConsentRecorder, session: SessionDep
) -> ConsentOut:
    """Record a consent the resident (or who may give it) has given."""
    await resident_of(session, user, resident_id)
    now = await database_now(session)
    consent = Consent(
        org_id=user.org_id,
        resident_id=resident_id,
        service=body.service,
        given_by=body.given_by,
        given_by_name=body.given_by_name,
        recorded_by=user.username,
        recorded_at=now,
        valid_from=body.valid_from or now,
    )
    session.add(consent)
    await session.flush()
    detail = {"service": body.service, "given_by": body.given_by, "consent": consent.id}
    audit(session, user, "consent.record", f"resident:{resident_id}", detail)
    await session.commit()
    return ConsentOut.model_validate(consent)


@router.post("/residents/{resident_id}/consents/{consent_id}/withdraw")
async def withdraw_consent(
    resident_id: ResidentId,
    consent_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    user: ConsentRecorder,
    session: SessionDep,
    services: ServicesDep,
) -> ConsentOut:
    """The consent is withdrawn from now: the service stops at once (for positions: the
    gateways that kept the resident's positions are told to stop)."""
    consent = await session.get(Consent, consent_id)
    if consent is None or consent.org_id != user.org_id or consent.resident_id != resident_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No consent {consent_id}")
    if consent.withdrawn_at is None:
        consent.withdrawn_at = await database_now(session)
        consent.withdrawn_by = user.username
        detail = {"service": consent.service, "consent": consent_id}
        audit(session, user, "consent.withdraw", f"resident:{resident_id}", detail)
        await session.commit()
        now = await database_now(session)
        still = await has_consent(session, user.org_id, resident_id, "position", now)
        if consent.service == "position" and not still:  # no other consent to positions
            await tracking_withdrawn(session, user, services.configuration, resident_id)
    return ConsentOut.model_validate(consent)
