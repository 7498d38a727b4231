"""Home rules per resident (cloud/homerules.py): read by those who handle alarms, set by
supervisors and administrators, delivered to the home's gateways as configuration."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status
from pydantic import BaseModel, ValidationError

from ..audit import audit
from ..configuration import ConfigurationConflict
from ..db import Resident, User
from ..homerules import ResidentRules, deliver_home, rules_of_home
from ..security import Role
from .deps import ResidentReader, ServicesDep, SessionDep, require_role
from .strict import StrictRoute

router = APIRouter(tags=["residents"], route_class=StrictRoute)

RulesSetter = Annotated[User, Depends(require_role(Role.SUPERVISOR, Role.ADMIN))]
ResidentIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]


class RulesOut(BaseModel):
    resident_id: str
    home_id: str
    rules: ResidentRules
    # What the home's gateways run: the strictest of its residents' rules.
    home_rules: dict[str, Any]
    # The configuration versions a change went out in, per gateway of the home.
    gateways: dict[str, int] = {}


async def _resident(session: SessionDep, user: User, resident_id: str) -> Resident:
    resident = await session.get(Resident, (user.org_id, resident_id))
    if resident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No resident {resident_id}")
    return resident


@router.get("/residents/{resident_id}/rules")
async def get_rules(
    resident_id: ResidentIdPath, user: ResidentReader, session: SessionDep
) -> RulesOut:
    resident = await _resident(session, user, resident_id)
    return RulesOut(
        resident_id=resident.id,
        home_id=resident.home_id,
        rules=ResidentRules.model_validate(resident.rules or {}),
        home_rules=await rules_of_home(session, user.org_id, resident.home_id),
    )


@router.put("/residents/{resident_id}/rules")
async def put_rules(
    resident_id: ResidentIdPath,
    body: ResidentRules,
    user: RulesSetter,
    session: SessionDep,
    services: ServicesDep,
) -> RulesOut:
    """The resident's rules: kept, audited, and the home's rules (the strictest of its
    residents') sent to each gateway of the home in a new configuration version."""
    resident = await _resident(session, user, resident_id)
    resident.rules = body.model_dump()
    audit(session, user, "resident.rules", f"resident:{resident_id}", resident.rules)
    await session.commit()
    home = await rules_of_home(session, user.org_id, resident.home_id)
    try:
        sent = await deliver_home(session, user, services.configuration, resident.home_id, home)
    except ConfigurationConflict as exc:  # a technician's change crossed ours: say so
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except ValidationError as exc:  # the gateway's configuration is full (homes, size)
        raise HTTPException(422, detail=f"the configuration cannot take it: {exc}") from None
    return RulesOut(
        resident_id=resident.id,
        home_id=resident.home_id,
        rules=body,
        home_rules=home,
        gateways={d.gateway_id: d.version for d in sent},
    )
