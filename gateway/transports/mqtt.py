"""Zigbee2MQTT over MQTT: subscribe to ``<base_topic>/#`` and hand every message on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from ..backoff import Backoff
from ..config import Zigbee2MqttSection

log = logging.getLogger("trygg.gateway.zigbee2mqtt")

Handler = Callable[[str, bytes], Awaitable[None]]


class Zigbee2MqttTransport:
    def __init__(self, settings: Zigbee2MqttSection, gateway_id: str, handler: Handler) -> None:
        self.settings = settings
        self.client_id = f"trygg-gw-{gateway_id}-z2m"
        self._handler = handler
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Consume forever; a lost broker is retried with backoff, never fatal."""
        backoff = Backoff()
        s = self.settings
        while True:
            try:
                async with aiomqtt.Client(
                    s.host,
                    s.port,
                    identifier=self.client_id,
                    username=s.username,
                    password=s.password,
                    clean_session=False,  # the broker keeps QoS 1 messages while we are away
                ) as client:
                    await client.subscribe(f"{s.base_topic}/#", qos=1)
                    self.connected.set()
                    backoff.reset()
                    log.info("subscribed to %s/# on %s:%d", s.base_topic, s.host, s.port)
                    async for message in client.messages:
                        payload = message.payload
                        if not isinstance(payload, bytes | bytearray):
                            payload = str(payload).encode() if payload is not None else b""
                        await self._handler(message.topic.value, bytes(payload))
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = backoff.next_delay()
                log.warning(
                    "zigbee2mqtt broker %s:%d: %s; retrying in %.1f s", s.host, s.port, exc, delay
                )
                await asyncio.sleep(delay)
