"""Zigbee2MQTT over MQTT: subscribe to ``<base_topic>/#`` and hand every message on.

A QoS 1 message is acknowledged to the broker only after the pipeline has handled it
(an alarm is committed to the outbox by then). A gateway killed in between gets the
message again from its persistent session; the pipeline knows the redelivery.
aiomqtt has no public manual-ack API yet, so paho's own is used through the client.

When the store cannot keep a message (a full disk, a damaged file), it is not acked: the
transport drops the connection and takes it again within half a second, so the broker
hands the message back until it is kept. That failure is logged once per outage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from ..backoff import Backoff
from ..config import Zigbee2MqttSection
from ..mqtt_socket import no_delay
from ..store import StoreError

log = logging.getLogger("trygg.gateway.zigbee2mqtt")

Handler = Callable[[str, bytes], Awaitable[None]]


class Zigbee2MqttTransport:
    def __init__(self, settings: Zigbee2MqttSection, gateway_id: str, handler: Handler) -> None:
        self.settings = settings
        self.client_id = f"trygg-gw-{gateway_id}-z2m"
        self._handler = handler
        self.connected = asyncio.Event()
        self.internal_errors = 0

    async def run(self) -> None:
        """Consume forever; a lost broker is retried with backoff, never fatal."""
        backoff = Backoff()
        s = self.settings
        store_failing = False
        while True:
            try:
                client = aiomqtt.Client(
                    s.host,
                    s.port,
                    identifier=self.client_id,
                    username=s.username,
                    password=s.password,
                    clean_session=False,  # the broker keeps QoS 1 messages while we are away
                )
                client._client.manual_ack_set(True)
                async with client:
                    no_delay(client)
                    await client.subscribe(f"{s.base_topic}/#", qos=1)
                    self.connected.set()
                    if not store_failing:
                        backoff.reset()
                        log.info("subscribed to %s/# on %s:%d", s.base_topic, s.host, s.port)
                    async for message in client.messages:
                        payload = message.payload
                        if not isinstance(payload, bytes | bytearray):
                            payload = str(payload).encode() if payload is not None else b""
                        try:
                            await self._handler(message.topic.value, bytes(payload))
                        except StoreError:
                            raise
                        except Exception:
                            # A bug on one message must not block every message behind it.
                            self.internal_errors += 1
                            log.exception("failed to handle a message on %s", message.topic.value)
                        client._client.ack(message.mid, message.qos)
                        if store_failing:
                            store_failing = False
                            backoff.reset()
                            log.warning("input is stored again; back to normal")
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = backoff.next_delay()
                log.warning(
                    "zigbee2mqtt broker %s:%d: %s; retrying in %.1f s", s.host, s.port, exc, delay
                )
                await asyncio.sleep(delay)
            except StoreError as exc:
                # Not acknowledged: the broker sends it again after we reconnect.
                self.connected.clear()
                if not store_failing:
                    log.error("could not store input (%s); not acked, taking it again", exc)
                store_failing = True
                await asyncio.sleep(backoff.next_delay(urgent=True))
