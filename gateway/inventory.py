"""The gateway's device inventory, reported to the dispatch service.

The dispatch service takes events only from devices a gateway has reported (and of
kinds in the catalog), so the gateway tells it what it has: every device in its registry
(id, type, home, transport, firmware where known, what it can do on a command), whole,
retained, on ``inventory_topic(<id>)``. The uplink publishes it on every connect before
it sends the outbox, when the dispatch service says it is online (a shared subscription
is not given retained messages), and before the next event after any change (a pairing,
a removal, a firmware build learned from a device).

The revision grows with every change and is kept in the store, so it only grows across
restarts; every event the uplink sends carries it. A change bumps it at once, in memory,
before any event of a newly paired device can exist: the dispatch service, seeing an
event of a device it does not know with a newer revision than the inventory it has,
waits for that inventory rather than refusing a real alarm. A store lost to damage
forgets the counter; a revision is therefore never below the clock's seconds either, so a
fresh store still reports a newer revision than the one it replaced.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import aiomqtt
from pydantic import BaseModel, ConfigDict, ValidationError

from devices import utc_now
from devices.wire import MAX_INVENTORY_DEVICES, Inventory, InventoryDevice, inventory_topic

from .actions import supported_actions
from .registry import RegisteredDevice, Registry
from .store import Store, StoreError

log = logging.getLogger("trygg.gateway.inventory")
META_KEY = "inventory"


class _Reported(BaseModel):
    """What the store keeps of the last inventory: its revision and its devices."""

    model_config = ConfigDict(extra="forbid")
    revision: int
    devices: list[InventoryDevice]


def describe(device: RegisteredDevice) -> InventoryDevice:
    config = device.config
    return InventoryDevice(
        id=config.id,
        type=config.type.value,
        home_id=config.home,
        transport=config.transport,
        firmware=device.status.firmware,
        actions=list(supported_actions(config)),
        address=config.address[:256],
        origin=device.origin,
    )


class InventoryReport:
    def __init__(
        self,
        gateway_id: str,
        registry: Registry,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway_id = gateway_id
        self.registry = registry
        self.store = store
        self._clock = clock
        self.revision = 0
        self._kept: int | None = None  # the revision last written to the store
        self._due = True  # not yet published since the last change (or connect)
        self.published = 0
        # Told of every change, so the uplink publishes before its next event.
        self.on_change: Callable[[], None] = lambda: None

    def devices(self) -> list[InventoryDevice]:
        devices = [describe(device) for device in self.registry]
        if len(devices) > MAX_INVENTORY_DEVICES:
            # The rest are not reported, so the dispatch service refuses their events: said
            # loudly, never a reason for the uplink to stop.
            log.error(
                "%d devices: only the first %d fit an inventory; the others' events will be"
                " refused",
                len(devices),
                MAX_INVENTORY_DEVICES,
            )
            del devices[MAX_INVENTORY_DEVICES:]
        return devices

    async def load(self) -> None:
        """Read the last revision from the store; bump it if the devices differ from
        what it said (the config file changed, a device was paired while the store was
        away). Then follow the registry."""
        last = await self._last()
        if last is not None:
            self.revision = self._kept = last.revision
            self._remember_firmware(last.devices)
        if last is None or last.devices != self.devices():
            self._bump()
        self.registry.subscribe(lambda _device, _added: self._changed())
        self.registry.watch_firmware(lambda _device: self._changed())

    async def _last(self) -> _Reported | None:
        try:
            body = await self.store.meta(META_KEY)
            return None if body is None else _Reported.model_validate_json(body)
        except (StoreError, ValidationError) as exc:
            log.warning("the last inventory could not be read (%s); starting a new revision", exc)
            return None

    def _remember_firmware(self, devices: list[InventoryDevice]) -> None:
        """A device's firmware is learned from its messages; until it speaks again after a
        restart, what the last inventory said of it is still the best knowledge."""
        known = {d.id: d for d in devices}
        for device in self.registry:
            before = known.get(device.id)
            same = before is not None and before.transport == device.config.transport
            if device.status.firmware is None and before is not None and same:
                device.status.firmware = before.firmware

    def _bump(self) -> None:
        self.revision = max(self.revision + 1, int(self._clock()))
        self._due = True

    def _changed(self) -> None:
        self._bump()
        self.on_change()

    def resend(self) -> None:
        """Publish again before the next event (a dispatch replica came online)."""
        self._due = True

    def current(self) -> Inventory:
        return Inventory(
            gateway_id=self.gateway_id,
            revision=self.revision,
            sent_at=utc_now(),
            devices=self.devices(),
        )

    async def publish(self, client: aiomqtt.Client) -> None:
        """Keep the revision, then publish the whole inventory, retained."""
        inventory = self.current()
        self._due = False
        if self._kept != inventory.revision:
            await self._keep(inventory)
        await client.publish(
            inventory_topic(self.gateway_id), inventory.model_dump_json(), qos=1, retain=True
        )
        self.published += 1
        log.info("reported %d devices, revision %d", len(inventory.devices), inventory.revision)

    async def publish_if_due(self, client: aiomqtt.Client) -> None:
        if self._due:
            await self.publish(client)

    async def _keep(self, inventory: Inventory) -> None:
        body = _Reported(revision=inventory.revision, devices=inventory.devices)
        try:
            await self.store.set_meta(META_KEY, json.dumps(body.model_dump(mode="json")))
        except StoreError as exc:
            # Reported anyway: the dispatch service needs it now, and after a restart the
            # clock floor of the revision still makes the next one newer.
            log.error("inventory revision %d not kept: %s", inventory.revision, exc)
            return
        self._kept = inventory.revision
