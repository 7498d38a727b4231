"""What a transport declares, and the one small interface it hands decoded input to.

A transport module (mqtt.py, serial.py, ble.py, ble_lock.py, camera.py) declares one
``TransportPlugin`` per device transport it serves, keyed by the ``transport`` of a
device's configuration. The service, the local API and pairing loop over these
entries; none of them names a transport. The pipeline is seen by a transport only
through ``Intake``: it takes decoded input and knows no transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from devices import Signal
from devices.codecs import Decoded

from ..actions import DeviceActor
from ..config import DeviceConfig, GatewayConfig
from ..counters import InputCounters
from ..registry import RegisteredDevice


class Intake(Protocol):
    """Where a transport hands what it decoded (the pipeline implements it)."""

    @property
    def counters(self) -> InputCounters: ...

    def devices(self, transport: str) -> Iterator[RegisteredDevice]: ...

    def device(self, transport: str, address: str) -> RegisteredDevice | None: ...

    async def accept(
        self,
        device: RegisteredDevice,
        decoded: Decoded,
        *,
        digest: bytes | None = None,
        rssi: float | None = None,
        source: str = "",
        resent: bool = False,
    ) -> None: ...

    async def raise_signal(
        self, device: RegisteredDevice, signal: Signal, active: bool, detail: Mapping[str, object]
    ) -> None: ...

    async def discovered(
        self, transport: str, address: str, source: str, said: str = ""
    ) -> None: ...

    def seen(self, device: RegisteredDevice, *, rssi: float | None = None) -> None: ...

    def describe(
        self, transport: str, address: str, model: str | None, suggested_type: str | None
    ) -> None:
        """What a transport says a device is: its model, the type it suggests."""
        ...

    def firmware(self, device: RegisteredDevice, build: str) -> None:
        """The firmware build a device (or its bridge) names: a change is reported."""
        ...

    def sender_resends(self) -> AbstractContextManager[None]:
        """While open, a store failure is raised rather than retried: the input's sender
        (a broker holding a QoS 1 message) keeps it until it is acked."""
        ...


@dataclass(frozen=True, slots=True)
class LinkHealth:
    """How /healthz and /metrics show one running link."""

    key: tuple[str, ...]  # where /healthz puts ``state``: ("zigbee2mqtt",), ("serial", "gps1")
    state: str  # "connected", "open", "scanning", ...
    up: bool
    problem: str  # said in /healthz while the link is down
    metric: str  # its label in trygg_gateway_uplink_connected


class Link(Protocol):
    """A transport's connection shared by its devices (a broker, a port, a scanner)."""

    @property
    def name(self) -> str: ...  # its task's name

    @property
    def ready(self) -> asyncio.Event: ...  # connected, open or scanning

    async def run(self) -> None: ...

    def health(self) -> LinkHealth: ...

    def summary(self) -> str: ...  # for the stop log line; "" when there is nothing to say


class DeviceLink(Protocol):
    """A connection of one device's own (a camera stream, a lock's GATT link)."""

    async def run(self) -> None: ...


def _no_links(_config: GatewayConfig, _intake: Intake) -> Sequence[Link]:
    return ()


def _pairable(_config: GatewayConfig, _device: DeviceConfig) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class TransportPlugin:
    """One device transport: how it is built, how its devices are paired and acted on.

    Its devices' config model is the member of ``gateway.config.DeviceConfig`` whose
    ``transport`` is ``name``."""

    name: str
    # The shared links this gateway's configuration asks for, built once at start.
    links: Callable[[GatewayConfig, Intake], Sequence[Link]] = _no_links
    # A link of the device's own, started when it is registered and stopped when removed.
    device_link: Callable[[GatewayConfig, RegisteredDevice, Intake], DeviceLink] | None = None
    # Why a device cannot be paired on this gateway as configured; None when it can.
    pairing: Callable[[GatewayConfig, DeviceConfig], str | None] = _pairable
    # Given the running link (shared or the device's own), what carries out commands on
    # its devices; None for transports that only listen.
    actor: Callable[[Any], DeviceActor] | None = None
