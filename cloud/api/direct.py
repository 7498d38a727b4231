"""Devices that report straight to the alarm centre (cloud/direct.py): a technician
registers one and gets its credential; the device posts its native messages
(docs/native-api.md) to ``/api/v1/dev/<device_id>/<kind>`` with it."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from devices import CodecError, DeviceType, UnexpectedValue
from devices.codecs.native import KINDS, MAX_MESSAGE_BYTES, decode_native

from ..alarms import Intake
from ..audit import audit
from ..clock import database_now
from ..direct import DirectError, authenticate, direct_gateway_id, register, take
from ..ingest import DATABASE_ERRORS
from ..schemas import AlarmChange, AlarmPublic
from .deps import DeviceManager, ServicesDep, SessionDep
from .strict import StrictRoute

log = logging.getLogger("trygg.cloud.direct")

router = APIRouter(tags=["devices"], route_class=StrictRoute)

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"  # as people.py's
DeviceIdPath = Annotated[str, Path(pattern=_ID, description="the device's id")]
REFUSED = "unknown device or wrong credential"


class DirectDeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID)
    type: DeviceType
    home_id: str = Field(pattern=_ID)
    resident_id: str | None = Field(default=None, pattern=_ID)


class DirectDeviceOut(BaseModel):
    device_id: str
    gateway_id: str
    credential: str = Field(description="shown once: give it to the device")
    post_to: str = Field(description="where the device posts: <this>/<kind>")


@router.post("/direct-devices", status_code=status.HTTP_201_CREATED)
async def register_direct_device(
    body: DirectDeviceIn, user: DeviceManager, session: SessionDep
) -> DirectDeviceOut:
    """Register a device that reports straight to this service, or give it a new
    credential (the previous one stops working). Audited."""
    if body.type in (DeviceType.DIGITAL_LOCK, DeviceType.CAMERA):
        raise HTTPException(422, f"a {body.type.value} takes commands: it needs a gateway")
    try:
        credential = await register(
            session, user.org_id, body.id, body.type, body.home_id, body.resident_id
        )
    except DirectError as exc:
        raise HTTPException(exc.status, detail=str(exc)) from None
    audit(session, user, "device.register_direct", f"device:{body.id}", {"type": body.type.value})
    await session.commit()
    return DirectDeviceOut(
        device_id=body.id,
        gateway_id=direct_gateway_id(user.org_id),
        credential=credential,
        post_to=f"/api/v1/dev/{body.id}",
    )


@router.post("/dev/{device_id}/{kind}", status_code=status.HTTP_202_ACCEPTED)
async def direct_message(
    device_id: DeviceIdPath,
    kind: Annotated[str, Path(max_length=16)],
    request: Request,
    session: SessionDep,
    services: ServicesDep,
) -> dict[str, Any]:
    """A direct device's message (docs/native-api.md), with ``Authorization: Bearer
    <its credential>``: 202 once committed (an alarm is in the queue), 503 to send it
    again when the database cannot take it."""
    if kind not in KINDS:
        raise HTTPException(404, f"no message kind {kind!r}: one of {', '.join(KINDS)}")
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MESSAGE_BYTES:
            raise HTTPException(413, f"a message is at most {MAX_MESSAGE_BYTES} bytes")
    try:
        device = None
        if scheme.lower() == "bearer" and credential.strip():
            device = await authenticate(session, device_id, credential.strip())
        if device is None:
            log.warning("direct device message for %r refused: %s", device_id[:128], REFUSED)
            raise HTTPException(401, REFUSED, headers={"WWW-Authenticate": "Bearer"})
        now = await database_now(session)
        try:
            message = decode_native(kind, bytes(body), now)
        except UnexpectedValue as exc:
            raise HTTPException(422, str(exc)) from None
        except CodecError as exc:
            raise HTTPException(400, str(exc)) from None
        taken = await take(session, device, message, now)
        if taken.refused is not None:
            raise HTTPException(422, taken.refused)
        changes = [_change(i) for i in (taken.back, taken.intake) if i and i.alarm is not None]
        await session.commit()
    except DATABASE_ERRORS as exc:
        log.warning("direct device %s: not committed: %s", device_id[:128], exc)
        raise HTTPException(503, "not kept: send it again", headers={"Retry-After": "1"}) from None
    for change in changes:
        services.hub.publish(device.org_id, change)
        if change.type == "created":
            alarm = change.alarm
            log.info("alarm %d %s from direct device %s", alarm.id, alarm.kind, device.id)
    return {"accepted": kind}


def _change(intake: Intake) -> AlarmChange:
    public = AlarmPublic.model_validate(intake.alarm)
    return AlarmChange(type="created" if intake.created else "updated", alarm=public)
