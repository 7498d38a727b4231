"""Signed commands to a gateway's devices (cloud/commands.py, docs/commands.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from devices.wire import COMMAND_MAX_TTL_S, GATEWAY_ID_PATTERN, CommandAction

from ..commands import DEFAULT_TTL_S, CommandRefused
from ..schemas import CommandChange, CommandPublic
from .deps import CommandIssuer, CommandReader, ServicesDep, SessionDep, SignedInDep
from .live import live_stream
from .strict import StrictRoute

router = APIRouter(tags=["commands"], route_class=StrictRoute)

GatewayIdPath = Annotated[str, Path(pattern=GATEWAY_ID_PATTERN, description="the gateway's id")]
CommandIdPath = Annotated[
    str, Path(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="its id")
]


class CommandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=128, description="a device of the gateway")
    action: CommandAction
    ttl_s: int = Field(
        default=DEFAULT_TTL_S,
        ge=1,
        le=COMMAND_MAX_TTL_S,
        description="how long the gateway may carry it out, in seconds",
    )


@router.post(
    "/gateways/{gateway_id}/commands",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "no such gateway, or no such device on it"},
        409: {"description": "the gateway does not report the device (any more)"},
        422: {"description": "a bad body, or an action the device does not support"},
        503: {"description": "commands are off, or the command could not be sent"},
    },
)
async def post_command(
    gateway_id: GatewayIdPath,
    body: CommandCreate,
    user: CommandIssuer,
    session: SessionDep,
    services: ServicesDep,
) -> CommandPublic:
    """Sign a command and send it to the gateway, once. Accepted is not done: follow its
    state (``GET /commands/{id}`` or the stream) to ``done``, ``failed``, ``refused`` or
    ``expired``."""
    try:
        command = await services.commands.create(
            session, user, gateway_id, body.device_id, body.action, body.ttl_s
        )
    except CommandRefused as exc:
        await session.rollback()
        raise HTTPException(exc.status, detail=exc.detail) from None
    if command.state == "failed" and command.reason == "not_sent":
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"Command {command.id} was not sent (the dispatch service has no link to "
            "the broker); it is recorded as failed (not_sent) and will not be sent later",
        )
    return command


@router.get("/gateways/{gateway_id}/commands")
async def get_gateway_commands(
    gateway_id: GatewayIdPath,
    user: CommandReader,
    session: SessionDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CommandPublic]:
    """The gateway's commands, the most recent first."""
    found = await services.commands.of_gateway(session, user.org_id, gateway_id, limit)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No gateway {gateway_id}")
    return found


@router.get("/commands/stream", response_class=StreamingResponse)
async def stream(
    user: CommandReader, signed_in: SignedInDep, services: ServicesDep, request: Request
) -> StreamingResponse:
    """Server-sent events: one ``command`` event per change of a command of your
    organisation (made, then each step of its state), its data the command as it is now.
    The stream ends within seconds of its session ending."""

    def render(change: CommandChange) -> str:
        return f"event: command\ndata: {change.command.model_dump_json()}\n\n"

    subscription = services.command_hub.subscribe(user.org_id)
    return live_stream(services, request, subscription, signed_in.session.id, render)


@router.get("/commands/{command_id}")
async def get_command(
    command_id: CommandIdPath, user: CommandReader, session: SessionDep, services: ServicesDep
) -> CommandPublic:
    command = await services.commands.get(session, user.org_id, command_id)
    if command is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"No command {command_id}")
    return command
