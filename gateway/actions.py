"""What the gateway can make a device do on a signed command, by transport and type.

One table: the command handler checks a command's action against it, and the device
inventory reports it to the dispatch service. A transport that acts on devices gives the
handler a ``DeviceActor`` (``TransportPlugin.actor``); the handler names no transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from devices import CATALOG, DeviceType, EventKind
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
    """What the device can be made to do; and a test of its alarm, where it has one."""
    tests: tuple[CommandAction, ...] = ("test",) if test_kind(device.type) is not None else ()
    return ACTIONS.get((device.transport, device.type), ()) + tests


def test_kind(device_type: DeviceType) -> EventKind | None:
    """The alarm a test of this kind of device raises: its first that is not technical
    (a pendant's press, a smoke alarm's smoke); None for a device that raises none."""
    spec = CATALOG[device_type]
    for signal in spec.alarms:
        kind = spec.event_kind(signal)
        if kind is not None and kind.name not in TECHNICAL_KIND_NAMES:
            return kind
    return None


# What a device says of its own health or a lock of its bolt: never what a test is of.
TECHNICAL_KIND_NAMES = frozenset(
    {
        "device_silent",
        "radio_lost",
        "battery_low",
        "tamper",
        "device_fault",
        "lock_jammed",
        "lock_opened",
    }
)


ActOutcome = Literal["done", "failed", "refused"]  # refused: a configure command only


@dataclass(frozen=True, slots=True)
class ActResult:
    """What a device did with a command: ``done`` when it confirmed the state asked for,
    else ``failed`` with a reason (``jammed``, ``no_answer``, ``unreachable``, ...)."""

    outcome: ActOutcome
    reason: str | None = None
    detail: str | None = None


class TestRaiser(Protocol):
    async def raise_test(self, device: RegisteredDevice, command: Command) -> None: ...


class TestActor:
    """Carries out a ``test``: the device's alarm, raised by the gateway through its own
    pipeline (outbox, uplink, the dispatch service's intake) and marked as a test; done
    once it is kept in the outbox, as a real press would be."""

    def __init__(self, raiser: TestRaiser) -> None:
        self.raiser = raiser

    async def act(
        self, device: RegisteredDevice, command: Command, answer_within_s: float
    ) -> ActResult:
        await self.raiser.raise_test(device, command)
        return ActResult("done", None, "test alarm kept for the dispatch service")


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
