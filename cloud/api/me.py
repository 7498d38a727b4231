"""Who is signed in, and the organisation settings a console needs to show them."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ..db import Organisation
from .deps import CurrentUser, ServicesDep, SessionDep
from .strict import StrictRoute

router = APIRouter(tags=["me"], route_class=StrictRoute)


class Me(BaseModel):
    username: str
    role: str
    org_id: str
    org_name: str
    # Alarms waiting longer than this are past the organisation's answer target.
    answer_target_s: int
    # IANA zone the organisation's times are shown in (e.g. "Europe/Stockholm").
    time_zone: str
    # The map's tile server (a URL template) and its attribution; None: a plain map.
    map_tiles: dict[str, str] | None = None
    # A device's readings can be charted (a time-series store is configured:
    # GET /api/v1/devices/{id}/readings answers).
    readings: bool = False


@router.get("/me")
async def get_me(user: CurrentUser, session: SessionDep, services: ServicesDep) -> Me:
    org = await session.get(Organisation, user.org_id)
    assert org is not None  # a user belongs to an organisation (foreign key)
    return Me(
        username=user.username,
        role=user.role,
        org_id=org.id,
        org_name=org.name,
        answer_target_s=org.answer_target_s,
        time_zone=org.time_zone,
        map_tiles=(
            {"url": tiles, "attribution": services.settings.map_attribution}
            if (tiles := services.settings.map_tile_url)
            else None
        ),
        readings=services.settings.readings_query_url is not None,
    )
