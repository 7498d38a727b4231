"""Home rules per resident (cloud/homerules.py): read by those who handle alarms, set by
supervisors and administrators, delivered to the home's gateways as configuration."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel

from ..audit import audit
from ..db import User
from ..homerules import ResidentRules, deliver_home, rules_of_home
from ..security import Role
from .away import delivery_refusals
from .deps import ResidentReader, ServicesDep, SessionDep, require_role, resident_of
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


@router.get("/residents/{resident_id}/rules")
async def get_rules(
    resident_id: ResidentIdPath, user: ResidentReader, session: SessionDep
) -> RulesOut:
    resident = await resident_of(session, user, resident_id)
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
    resident = await resident_of(session, user, resident_id)
    resident.rules = body.model_dump()
    audit(session, user, "resident.rules", f"resident:{resident_id}", resident.rules)
    await session.commit()
    home = await rules_of_home(session, user.org_id, resident.home_id)
    with delivery_refusals():
        sent = await deliver_home(session, user, services.configuration, resident.home_id, home)
    return RulesOut(
        resident_id=resident.id,
        home_id=resident.home_id,
        rules=body,
        home_rules=home,
        gateways={d.gateway_id: d.version for d in sent},
    )
