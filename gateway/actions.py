"""What the gateway can make a device do on a signed command, by transport and type.

One table: the command handler checks a command's action against it, and the device
inventory reports it to the dispatch service. A transport that acts on devices gives the
handler a ``DeviceActor`` (``TransportPlugin.actor``); the handler names no transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from devices import DeviceType
from devices.wire import Command, CommandAction

from .config import DeviceConfig

if TYPE_CHECKING:
    from .registry import RegisteredDevice

_LOCK: tuple[CommandAction, ...] = ("unlock", "lock")

# (transport, device type) -> the actions the gateway can carry out through that transport.
ACTIONS: dict[tuple[str, DeviceType], tuple[CommandAction, ...]] = {
    ("zigbee2mqtt", DeviceType.DIGITAL_LOCK): _LOCK,
    ("ble_lock", DeviceType.DIGITAL_LOCK): _LOCK,
}


def supported_actions(device: DeviceConfig) -> tuple[CommandAction, ...]:
    return ACTIONS.get((device.transport, device.type), ())


ActOutcome = Literal["done", "failed"]


@dataclass(frozen=True, slots=True)
class ActResult:
    """What a device did with a command: ``done`` when it confirmed the state asked for,
    else ``failed`` with a reason (``jammed``, ``no_answer``, ``unreachable``, ...)."""

    outcome: ActOutcome
    reason: str | None = None
    detail: str | None = None


class DeviceActor(Protocol):
    """What carries out commands on a transport's devices (``TransportPlugin.actor``)."""

    async def act(
        self, device: RegisteredDevice, command: Command, answer_within_s: float
    ) -> ActResult: ...


class Unreachable:
    """The actor of a device whose link is not running (yet, or any more)."""

    async def act(
        self, device: RegisteredDevice, command: Command, answer_within_s: float
    ) -> ActResult:
        return ActResult("failed", "unreachable", f"no link to {device.id} is running")


def wanted_state(action: CommandAction) -> str:
    """The lock state a lock action asks for ("unlocked" / "locked")."""
    return {"unlock": "unlocked", "lock": "locked"}[action]
