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
from typing import cast

import aiomqtt
import paho.mqtt.client as mqtt

from ..backoff import Backoff
from ..config import Zigbee2MqttSection
from ..mqtt_socket import no_delay
from ..store import StoreError
from .intake import IntakeQueue

log = logging.getLogger("trygg.gateway.zigbee2mqtt")

# (topic, payload, resent: the broker flagged it as a redelivery)
Handler = Callable[[str, bytes, bool], Awaitable[None]]
Dropped = Callable[[str], None]


class Zigbee2MqttTransport:
    def __init__(
        self,
        settings: Zigbee2MqttSection,
        gateway_id: str,
        handler: Handler,
        on_dropped: Dropped = lambda _topic: None,
    ) -> None:
        self.settings = settings
        self.client_id = f"trygg-gw-{gateway_id}-z2m"
        self._handler = handler
        self._on_dropped = on_dropped
        self._queue: IntakeQueue | None = None
        self._received = 0
        self._in_hand = 0  # a message taken from the queue and not yet acked
        self.connected = asyncio.Event()
        self.internal_errors = 0

    def _intake(self, maxsize: int = 0) -> IntakeQueue:
        del maxsize  # aiomqtt's own bound would drop without regard to QoS
        if self._queue is not None:
            self._received += self._queue.received
        self._queue = IntakeQueue(
            self.settings.max_queued, lambda message: self._on_dropped(message.topic.value)
        )
        return self._queue

    @staticmethod
    def _note_redeliveries(client: aiomqtt.Client) -> set[int]:
        """The ids of messages the broker sent again (MQTT's DUP flag), which aiomqtt's
        messages do not carry: noted from paho's callback before aiomqtt queues them."""
        resent: set[int] = set()
        paho_client = client._client
        deliver = paho_client.on_message
        assert deliver is not None

        def on_message(c: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
            if message.dup and message.qos > 0:
                resent.add(message.mid)
            deliver(c, userdata, message)

        paho_client.on_message = on_message
        return resent

    @property
    def received(self) -> int:
        """Messages the broker delivered, over every connection."""
        return self._received + (self._queue.received if self._queue else 0)

    @property
    def waiting(self) -> int:
        """Messages received and not yet handled (on a stop, QoS 1 ones come again)."""
        return (self._queue.qsize() if self._queue else 0) + self._in_hand

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
                    # aiomqtt builds its queue from a class; a factory does the same job.
                    queue_type=cast("type[asyncio.Queue[aiomqtt.Message]]", self._intake),
                )
                client._client.manual_ack_set(True)
                resent = self._note_redeliveries(client)
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
                        self._in_hand = 1
                        again = message.mid in resent
                        resent.discard(message.mid)
                        try:
                            await self._handler(message.topic.value, bytes(payload), again)
                        except StoreError:
                            raise
                        except Exception:
                            # A bug on one message must not block every message behind it.
                            self.internal_errors += 1
                            log.exception("failed to handle a message on %s", message.topic.value)
                        client._client.ack(message.mid, message.qos)
                        self._in_hand = 0
                        if store_failing:
                            store_failing = False
                            backoff.reset()
                            log.warning("input is stored again; back to normal")
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # The disconnect of a cancelled client may fail too: still a stop.
                    raise asyncio.CancelledError from exc
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
