"""Devices on Trygg's own protocol (docs/native-api.md): LTE and Wi-Fi devices that are
neither Zigbee nor BLE. Two ways in, one handling:

- MQTT on the home broker, ``trygg/v1/dev/<device_id>/<kind>``: each device logs in as
  itself (its id, its credential) and the broker's ACL lets it publish only under its
  own id (``trygg gateway broker-acl``), so the topic names the device truly. Acked after
  the pipeline has kept the message, like Zigbee2MQTT's.
- HTTPS, ``POST /dev/v1/<device_id>/<kind>`` on the gateway's API (gateway/api.py), with
  ``Authorization: Bearer <credential>``: answered 202 only once the message is kept.

A message with an ``id`` is the same message whenever it comes again with that id (a
device resending after a lost answer): taken once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from devices import CodecError, UnexpectedValue, utc_now
from devices.codecs import Decoded
from devices.codecs.native import KINDS, Fix, NativeMessage, credential_digest, decode_native

from ..config import GatewayConfig, NativeDevice
from ..counters import DropReason
from ..registry import RegisteredDevice
from .mqtt import Zigbee2MqttTransport
from .plugin import Intake, TransportPlugin

log = logging.getLogger("trygg.gateway.native")

TRANSPORT = "native"
TOPIC_ROOT = "trygg/v1/dev"
_POSITION = frozenset({"latitude", "longitude"})


def authentic(device: RegisteredDevice, credential: str) -> bool:
    config = device.config
    if not isinstance(config, NativeDevice):
        return False
    given = credential_digest(credential).encode()
    return hmac.compare_digest(given, config.credential_sha256.encode())


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a message was not taken: ``status`` for HTTPS, ``reason`` counted as a drop."""

    status: int
    reason: DropReason
    detail: str


class NativeInput:
    """One native message from a known device: decoded, its fix judged, to the pipeline."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        # Messages being stored now: the same one again (a device that gave up waiting
        # and resent) must not be answered "taken" before the first is kept.
        self._storing: set[tuple[str, bytes]] = set()

    async def take(
        self, device: RegisteredDevice, kind: str, payload: bytes, source: str, resent: bool
    ) -> Refused | None:
        """None once kept; a store failure is raised (the sender keeps the message)."""
        counters = self.intake.counters
        try:
            message = decode_native(kind, payload, utc_now())
        except UnexpectedValue as exc:
            counters.drop(DropReason.UNEXPECTED_VALUE, source, str(exc))
            return Refused(422, DropReason.UNEXPECTED_VALUE, str(exc))
        except CodecError as exc:
            counters.drop(DropReason.MALFORMED, source, str(exc))
            return Refused(400, DropReason.MALFORMED, str(exc))
        decoded = _judged(device, message)
        body = message.canonical
        if message.message_id is not None:
            # The device's id and the message itself name it: the same again is a resend
            # (however late); the same id on another message (a counter that started over
            # after a battery change) is a new one.
            key = f"native:{kind}:{message.message_id}:".encode() + body
            digest, resent = hashlib.blake2b(key, digest_size=16).digest(), True
        else:
            digest = hashlib.blake2b(kind.encode() + b"\0" + body, digest_size=16).digest()
        storing = (device.id, digest)
        if storing in self._storing:
            detail = "the same message is being stored: send it again"
            counters.drop(DropReason.DUPLICATE, source, detail)
            return Refused(503, DropReason.DUPLICATE, detail)
        self._storing.add(storing)
        try:
            with self.intake.sender_resends():
                await self.intake.accept(
                    device, decoded, digest=digest, source=source, resent=resent
                )
        finally:
            self._storing.discard(storing)
        return None


def _judged(device: RegisteredDevice, message: NativeMessage) -> Decoded:
    """A position from a fix not good enough for this device is not used: its quality is
    kept, its place is not (an alarm still carries it, with its accuracy)."""
    decoded = message.decoded
    if message.kind != "position" or message.fix is None:
        return decoded
    if good_fix(device, message.fix):
        return decoded
    readings = tuple((m, v) for m, v in decoded.readings if m not in _POSITION)
    return Decoded(readings, decoded.signals, decoded.sequence, decoded.firmware)


def good_fix(device: RegisteredDevice, fix: Fix) -> bool:
    config = device.config
    assert isinstance(config, NativeDevice)
    if fix.satellites is not None and fix.satellites < config.min_satellites:
        return False
    if fix.hdop is not None and fix.hdop > config.max_hdop:
        return False
    accuracy = fix.accuracy
    return accuracy is None or accuracy <= config.max_accuracy_m


class NativeMqttInput:
    """``trygg/v1/dev/<device_id>/<kind>`` on the home broker, to ``NativeInput``."""

    def __init__(self, intake: Intake) -> None:
        self.native = NativeInput(intake)
        self.intake = intake

    async def handle(self, topic: str, payload: bytes, resent: bool = False) -> None:
        source = f"mqtt:{topic[:200]}"
        counters = self.intake.counters
        parts = topic.split("/")
        if len(parts) != 5 or "/".join(parts[:3]) != TOPIC_ROOT or parts[4] not in KINDS:
            counters.drop(DropReason.UNKNOWN_TOPIC, source)
            return
        device_id, kind = parts[3], parts[4]
        device = self.intake.device(TRANSPORT, device_id)
        if device is None:
            await self.intake.discovered(TRANSPORT, device_id[:128], source, kind)
            return
        await self.native.take(device, kind, payload, source, resent)


def _links(config: GatewayConfig, intake: Intake) -> Sequence[Zigbee2MqttTransport]:
    if config.native is not None and not config.native.mqtt:
        return ()  # HTTPS only
    section = config.zigbee2mqtt  # the home broker
    messages = NativeMqttInput(intake)

    def dropped(topic: str) -> None:
        reason = "QoS 0 message dropped: overload"
        intake.counters.drop(DropReason.QUEUE_FULL, f"mqtt:{topic[:200]}", reason)

    link = Zigbee2MqttTransport(
        section,
        config.gateway.id,
        messages.handle,
        dropped,
        name=TRANSPORT,
        topic=f"{TOPIC_ROOT}/+/+",
    )
    return [link]


PLUGINS = {TRANSPORT: TransportPlugin(TRANSPORT, links=_links)}
