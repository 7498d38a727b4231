"""The gateway process: an explicit ordered list of start steps, undone in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .config import GatewayConfig
from .counters import InputCounters
from .pipeline import Pipeline
from .registry import Registry
from .store import Store
from .transports import Zigbee2MqttTransport
from .uplink import DispatchUplink

log = logging.getLogger("trygg.gateway")


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.counters = InputCounters()
        self.registry = Registry(config.devices)
        self.store = Store(config.store.path)
        self.uplink = DispatchUplink(
            config.uplink,
            config.gateway.id,
            self.store,
            heartbeat_interval_s=config.gateway.heartbeat_interval_s,
        )
        self.pipeline = Pipeline(
            config.gateway.id,
            self.registry,
            self.store,
            self.counters,
            base_topic=config.zigbee2mqtt.base_topic,
            max_payload_bytes=config.zigbee2mqtt.max_payload_bytes,
            on_event=lambda _event: self.uplink.wake(),
        )
        self.zigbee2mqtt = Zigbee2MqttTransport(
            config.zigbee2mqtt, config.gateway.id, self.pipeline.handle_zigbee2mqtt
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        # Storage first: nothing may be accepted before it can be kept. Then the uplink,
        # so what is already in the outbox starts moving; the devices come last.
        await self.store.open()
        self._tasks.append(asyncio.create_task(self.uplink.run(), name="uplink"))
        self._tasks.append(asyncio.create_task(self.zigbee2mqtt.run(), name="zigbee2mqtt"))
        log.info(
            "gateway %s started: %d devices, store %s",
            self.config.gateway.id,
            len(self.config.devices),
            self.config.store.path,
        )

    async def stop(self) -> None:
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.store.close()
        log.info("gateway %s stopped", self.config.gateway.id)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def run_forever(self) -> None:
        async with self:
            await asyncio.gather(*self._tasks)
