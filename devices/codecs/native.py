"""Trygg's own device protocol, for devices that are neither Zigbee nor BLE (LTE and
Wi-Fi GPS alarms, watches, hubs): JSON messages of four kinds, ``alarm``, ``reading``,
``position`` and ``heartbeat``, over MQTT (``trygg/v1/dev/<device_id>/<kind>``) or HTTPS
(``POST /dev/v1/<device_id>/<kind>``). docs/native-api.md is the protocol; the JSON
Schema there (docs/native-api.schema.json) is generated from the models below.

A message's ``id`` is the device's own and names the message: the same id again is a
resend (a lost answer, a QoS 1 redelivery), the same message, taken once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..catalog import Signal
from ..errors import MalformedPayload, UnexpectedValue
from ..model import UtcDatetime
from .common import Decoded, SignalState, parse_json, total

MAX_MESSAGE_BYTES = 8 * 1024
KINDS = ("alarm", "reading", "position", "heartbeat")
MESSAGE_ID = r"^[A-Za-z0-9_.:-]{1,64}$"
METRIC = r"^[a-z][a-z0-9_]{0,47}$"
# Where a device states no accuracy, a fix's is estimated from its HDOP: a receiver's
# typical user range error (about 5 m for a consumer GPS chip) times the HDOP.
UERE_M = 5.0


def accuracy_of(hdop: float) -> float:
    """A fix's accuracy (metres) estimated from its HDOP."""
    return round(hdop * UERE_M, 1)


# alarm name -> (the signal, whether it is an occurrence rather than a state)
ALARMS: dict[str, tuple[Signal, bool]] = {
    "sos": (Signal.BUTTON_PRESS, True),
    "fall": (Signal.FALL, True),
    "smoke": (Signal.SMOKE, False),
    "co": (Signal.CO, False),
    "gas": (Signal.GAS, False),
    "heat": (Signal.HEAT, False),
    "water_leak": (Signal.WATER_LEAK, False),
    "tamper": (Signal.TAMPER, False),
    "battery_low": (Signal.BATTERY_LOW, False),
    "device_fault": (Signal.DEVICE_FAULT, False),
}
AlarmName = Literal[
    "sos", "fall", "smoke", "co", "gas", "heat", "water_leak", "tamper", "battery_low",
    "device_fault",
]  # fmt: skip
assert set(ALARMS) == set(AlarmName.__args__)  # type: ignore[attr-defined]

Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(
        default=None,
        pattern=MESSAGE_ID,
        description="The device's own id of this message: a resend carries the same id.",
    )
    at: UtcDatetime | None = Field(
        default=None, description="When it happened, by the device's clock (UTC offset given)."
    )


class Fix(BaseModel):
    """A position as a GPS (or a network) located it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latitude: Finite = Field(ge=-90, le=90)
    longitude: Finite = Field(ge=-180, le=180)
    accuracy_m: Finite | None = Field(
        default=None, ge=0, le=100_000, description="Radius of 68 % confidence, metres."
    )
    fix: Literal["2d", "3d", "network"] = "3d"
    satellites: int | None = Field(default=None, ge=0, le=64)
    hdop: Finite | None = Field(default=None, ge=0, le=99.9)
    speed_kmh: Finite | None = Field(default=None, ge=0, le=1000)
    at: UtcDatetime | None = Field(default=None, description="When the fix was taken.")

    @property
    def accuracy(self) -> float | None:
        if self.accuracy_m is not None:
            return self.accuracy_m
        return None if self.hdop is None else accuracy_of(self.hdop)


class AlarmMessage(_Message):
    """Something somebody may have to act on: an SOS press, a fall, a detector."""

    id: str = Field(pattern=MESSAGE_ID, description="Required: an alarm is resent until answered.")
    alarm: AlarmName
    active: bool = Field(
        default=True, description="false: the condition ended (smoke cleared); sos and fall are "
        "occurrences and are never false.",
    )  # fmt: skip
    test: bool = Field(default=False, description="A test press: recorded as a test, no alarm.")
    position: Fix | None = Field(default=None, description="The device's latest fix.")


class ReadingMessage(_Message):
    """Measurements: ``{"readings": {"temperature_c": 21.5, "battery_pct": 80}}``."""

    readings: dict[Annotated[str, Field(pattern=METRIC)], Finite] = Field(
        min_length=1, max_length=32
    )


class PositionMessage(_Message, Fix):
    """Where the device is now."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    at: UtcDatetime | None = None


class HeartbeatMessage(_Message):
    """The device is alive (and, optionally, how its battery and firmware are)."""

    battery_pct: Finite | None = Field(default=None, ge=0, le=100)
    firmware: str | None = Field(default=None, pattern=r"^[\x21-\x7e]{1,64}$")


MODELS: dict[str, type[_Message]] = {
    "alarm": AlarmMessage,
    "reading": ReadingMessage,
    "position": PositionMessage,
    "heartbeat": HeartbeatMessage,
}
_ADAPTERS = {kind: TypeAdapter(model) for kind, model in MODELS.items()}


@dataclass(frozen=True, slots=True)
class NativeMessage:
    kind: str
    message_id: str | None
    decoded: Decoded
    # A fix this message carried (a position, or an alarm's), for the alarms that follow.
    fix: Fix | None = None
    # The message as canonical JSON: the same message resent is the same bytes, however
    # the device ordered its keys.
    canonical: bytes = b""


def credential_digest(credential: str) -> str:
    """What a gateway's configuration or the dispatch service keeps of a device's
    credential: its SHA-256, hex. A credential is a random token of 256 bits, so a fast
    hash is as safe as a slow one, and costs no time per request."""
    return hashlib.sha256(credential.encode()).hexdigest()


def position_readings(fix: Fix) -> list[tuple[str, float]]:
    readings = [("latitude", fix.latitude), ("longitude", fix.longitude)]
    accuracy = fix.accuracy
    if accuracy is not None:
        readings.append(("accuracy_m", accuracy))
    if fix.satellites is not None:
        readings.append(("satellites", float(fix.satellites)))
    if fix.hdop is not None:
        readings.append(("hdop", fix.hdop))
    if fix.speed_kmh is not None:
        readings.append(("speed_kmh", fix.speed_kmh))
    return readings


def fix_detail(fix: Fix, now: datetime) -> dict[str, Any]:
    """What an alarm says of the position it carries: where, how well, how old."""
    detail: dict[str, Any] = {"latitude": fix.latitude, "longitude": fix.longitude}
    accuracy = fix.accuracy
    if accuracy is not None:
        detail["accuracy_m"] = accuracy
    detail["fix"] = fix.fix
    if fix.at is not None:
        detail["fix_age_s"] = max(0.0, round((now - fix.at).total_seconds(), 1))
    return detail


@total("native device message")
def decode_native(kind: str, payload: bytes, now: datetime) -> NativeMessage:
    """One message of ``kind`` (alarm, reading, position, heartbeat); ``now`` ages an
    alarm's fix where the device dated it."""
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        raise MalformedPayload(f"no message kind {kind[:40]!r} (one of {', '.join(KINDS)})")
    body = parse_json(payload, max_bytes=MAX_MESSAGE_BYTES)
    if not isinstance(body, dict):
        raise MalformedPayload(f"a {kind} message is a JSON object, not {type(body).__name__}")
    try:
        message = adapter.validate_python(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or kind
        raise UnexpectedValue(f"{kind}: {where}: {first['msg']}"[:200]) from None
    dumped = message.model_dump(mode="json", exclude_none=True)
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":")).encode()
    if isinstance(message, AlarmMessage):
        return replace(_alarm(message, now), canonical=canonical)
    if isinstance(message, ReadingMessage):
        readings = tuple((m, float(v)) for m, v in sorted(message.readings.items()))
        return NativeMessage(kind, message.id, Decoded(readings=readings), canonical=canonical)
    if isinstance(message, PositionMessage):
        decoded = Decoded(readings=tuple(position_readings(message)))
        return NativeMessage(kind, message.id, decoded, fix=message, canonical=canonical)
    assert isinstance(message, HeartbeatMessage)
    readings = () if message.battery_pct is None else (("battery_pct", message.battery_pct),)
    decoded = Decoded(readings=readings, firmware=message.firmware)
    return NativeMessage(kind, message.id, decoded, canonical=canonical)


def _alarm(message: AlarmMessage, now: datetime) -> NativeMessage:
    signal, momentary = ALARMS[message.alarm]
    if momentary and not message.active:
        raise UnexpectedValue(f"alarm: a {message.alarm} is an occurrence, never active false")
    detail: dict[str, Any] = {"source": "native", "message": message.id}
    if message.at is not None:
        detail["device_at"] = message.at.isoformat()
    if message.test:
        detail["test"] = True
    if message.position is not None:
        detail.update(fix_detail(message.position, now))
    state = SignalState(signal, message.active, momentary, detail)
    return NativeMessage("alarm", message.id, Decoded(signals=(state,)), fix=message.position)


def json_schema() -> dict[str, Any]:
    """The protocol's JSON Schema: one definition per message kind."""
    definitions: dict[str, Any] = {}
    for model in MODELS.values():
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        definitions.update(schema.pop("$defs", {}))
        definitions[model.__name__] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "native-api.schema.json",
        "title": "Trygg native device API, v1",
        "description": "One message per request (HTTPS) or per publish (MQTT); the kind is "
        "the last part of the path or topic.",
        "oneOf": [{"$ref": f"#/$defs/{m.__name__}"} for m in MODELS.values()],
        "$defs": dict(sorted(definitions.items())),
    }


if __name__ == "__main__":  # python -m devices.codecs.native > docs/native-api.schema.json
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
