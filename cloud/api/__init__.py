from fastapi import APIRouter

from . import alarms, auth, people, statistics

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(auth.router)
api_router.include_router(alarms.router)
api_router.include_router(statistics.router)
api_router.include_router(people.router)

__all__ = ["api_router"]
