from fastapi import APIRouter

from . import (
    alarms,
    auth,
    away,
    commands,
    configuration,
    direct,
    locks,
    me,
    people,
    push,
    readings,
    rules,
    staff,
    statistics,
    visits,
)
from .strict import SMALL_BODY_BYTES, StrictRoute

api_router = APIRouter(prefix="/api/v1", route_class=StrictRoute)
api_router.include_router(auth.router)
api_router.include_router(me.router)
api_router.include_router(alarms.router)
api_router.include_router(statistics.router)
api_router.include_router(people.router)
api_router.include_router(commands.router)
api_router.include_router(configuration.router)
api_router.include_router(locks.router)
api_router.include_router(staff.router)
api_router.include_router(visits.router)
api_router.include_router(push.router)
api_router.include_router(readings.router)
api_router.include_router(direct.router)
api_router.include_router(away.router)
api_router.include_router(rules.router)

__all__ = ["SMALL_BODY_BYTES", "StrictRoute", "api_router"]
