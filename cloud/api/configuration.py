"""A gateway's configuration, kept here and delivered to it (cloud/configuration.py,
docs/configuration.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from devices.wire import (
    GATEWAY_ID_PATTERN,
    MAX_CONFIG_DEVICES,
    MAX_CONFIG_HOMES,
    MAX_CONFIGURE_BYTES,
)

from ..clock import database_now
from ..configuration import ConfigurationConflict, Delivery
from ..db import Gateway
from ..doors import has_consent
from ..schemas import CommandPublic
from ..services import Services
from .deps import DeviceManager, DeviceReader, ServicesDep, SessionDep
from .strict import StrictRoute

router = APIRouter(tags=["configuration"], route_class=StrictRoute)

GatewayIdPath = Annotated[str, Path(pattern=GATEWAY_ID_PATTERN, description="the gateway's id")]
# What one configure command may carry, less its envelope (ids, times, signature).
BODY_BYTES = MAX_CONFIGURE_BYTES - 4096


class ConfigurationChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_version: int | None = Field(
        description="the version this change was made from (null: the gateway has none); "
        "a change from an older one is refused 409"
    )
    devices: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=MAX_CONFIG_DEVICES,
        description="each as a [[devices]] entry of the gateway's file",
    )
    homes: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=MAX_CONFIG_HOMES,
        description="each as a [[homes]] entry of the gateway's file",
    )
    heartbeat_interval_s: int | None = Field(default=None, ge=60, le=86400)


class ConfigurationOut(BaseModel):
    gateway_id: str
    version: int | None = Field(description="the newest version; null: none set here")
    devices: list[dict[str, Any]]
    homes: list[dict[str, Any]]
    heartbeat_interval_s: int | None
    created_by: str | None
    created_at: datetime | None
    applied_version: int | None = Field(description="the version the gateway has in force")
    delivery: Delivery
    command: CommandPublic | None = Field(description="the last configure command sent")


async def _gateway(session: AsyncSession, org_id: str, gateway_id: str) -> Gateway:
    gateway = await session.get(Gateway, gateway_id)
    if gateway is None or gateway.org_id != org_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No gateway {gateway_id}")
    return gateway


async def _out(services: Services, session: AsyncSession, gateway: Gateway) -> ConfigurationOut:
    state = await services.configuration.state(session, gateway)
    configuration = state.configuration
    return ConfigurationOut(
        gateway_id=gateway.id,
        version=state.version,
        devices=[] if configuration is None else configuration.devices,
        homes=[] if configuration is None else configuration.homes,
        heartbeat_interval_s=None if configuration is None else configuration.heartbeat_interval_s,
        created_by=state.created_by,
        created_at=state.created_at,
        applied_version=state.applied_version,
        delivery=state.delivery,
        command=state.command,
    )


@router.get("/gateways/{gateway_id}/configuration")
async def get_configuration(
    gateway_id: GatewayIdPath, user: DeviceReader, session: SessionDep, services: ServicesDep
) -> ConfigurationOut:
    """What the gateway should have, what it has, and how the delivery went: ``applied``
    (in force), ``pending`` (on its way, or sent again at its next heartbeat),
    ``refused`` (the command's reason and detail say why: correct it and save again),
    ``failed``, or ``none`` (nothing set here: the gateway's file alone)."""
    gateway = await _gateway(session, user.org_id, gateway_id)
    return await _out(services, session, gateway)


@router.put(
    "/gateways/{gateway_id}/configuration",
    max_body_size=BODY_BYTES,
    responses={
        404: {"description": "no such gateway"},
        409: {"description": "another change came first (base_version is not the newest)"},
        422: {"description": "a bad body"},
    },
)
async def put_configuration(
    gateway_id: GatewayIdPath,
    body: ConfigurationChange,
    user: DeviceManager,
    session: SessionDep,
    services: ServicesDep,
) -> ConfigurationOut:
    """A new version of the gateway's devices, homes and heartbeat interval: kept,
    audited, and sent as a signed ``configure`` command; the gateway checks it by the
    rules of its own file and applies it whole or refuses it with the reason."""
    gateway = await _gateway(session, user.org_id, gateway_id)
    change = body.model_dump(exclude={"base_version"})
    now = await database_now(session)
    for device in change.get("devices", []):
        # Positions kept (tracking) only with the resident's consent to it, recorded here.
        # Whatever the gateway would read as true ("true", 1, ...): only false or absent
        # is no tracking.
        if device.get("tracking") not in (None, False):
            resident = device.get("resident")
            if not resident or not await has_consent(
                session, user.org_id, str(resident), "position", now
            ):
                raise HTTPException(
                    422,
                    detail=f"device {device.get('id')}: tracking needs its resident's consent "
                    "to positions, and none is recorded",
                )
    try:
        await services.configuration.change(session, user, gateway, body.base_version, change)
    except ConfigurationConflict as exc:
        await session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except ValidationError as exc:  # the wire's own bounds (checked above already)
        await session.rollback()
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc.errors()[0]["msg"])
        ) from None
    await session.refresh(gateway)
    return await _out(services, session, gateway)
