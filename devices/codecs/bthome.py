"""BTHome v2 advertisements (service data under UUID 0xFCD2), plain and encrypted.

Decoding is bthome-ble's, the reference parser. One ``BthomeDecoder`` lives per device
(its address and key). Each advertisement is decoded on its own and carries its packet
id as ``Decoded.sequence``: the gateway's pipeline takes the same packet id again for a
radio retransmission (no second alarm) and a new one for a new press. A device with a
key must send encrypted advertisements; a plain one from it is refused, not believed.
"""

from __future__ import annotations

import logging
from typing import Any

from bthome_ble import BTHomeBluetoothDeviceData
from habluetooth import BluetoothServiceInfoBleak

from ..catalog import DeviceType, Signal
from ..errors import MalformedPayload, UnexpectedValue
from .common import Decoded, SignalState

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
MAX_PAYLOAD = 64  # service data in one legacy advertisement is far shorter

# bthome-ble sensor keys (without "_1" suffixes) -> our reading names.
READINGS: dict[str, str] = {
    "battery": "battery_pct",
    "temperature": "temperature_c",
    "humidity": "humidity_pct",
    "pressure": "pressure_hpa",
    "illuminance": "illuminance_lux",
    "carbon_dioxide": "co2_ppm",
    "voltage": "voltage_v",
    "moisture": "moisture_pct",
}

# bthome-ble binary sensor keys -> signals (all: True means active).
SIGNALS: dict[str, Signal] = {
    "smoke": Signal.SMOKE,
    "carbon_monoxide": Signal.CO,
    "moisture": Signal.WATER_LEAK,
    "door": Signal.DOOR_OPEN,
    "window": Signal.DOOR_OPEN,
    "opening": Signal.DOOR_OPEN,
    "motion": Signal.MOTION,
    "occupancy": Signal.MOTION,
    "presence": Signal.MOTION,
    "tamper": Signal.TAMPER,
    "battery": Signal.BATTERY_LOW,  # BTHome's "battery" binary sensor means low
}

PRESSES = {
    "press",
    "double_press",
    "triple_press",
    "long_press",
    "long_double_press",
    "long_triple_press",
    "hold_press",
}
_PRESS_TYPES = {DeviceType.ALARM_BUTTON, DeviceType.FALL_DETECTOR, DeviceType.GPS_PENDANT}


class _Once(logging.Filter):
    """bthome-ble warns on every advertisement of a misbehaving device; say it once."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self._seen:
            return False
        if len(self._seen) < 1000:
            self._seen.add(message)
        return True


logging.getLogger("bthome_ble").addFilter(_Once())
logging.getLogger("bthome_ble.parser").addFilter(_Once())


def _base(key: str) -> str:
    head, _, tail = key.rpartition("_")
    return head if head and tail.isdigit() else key


class BthomeDecoder:
    """The decoder for one device (its address and, if it encrypts, its bindkey)."""

    def __init__(self, device_type: DeviceType, address: str, bindkey: bytes | None = None) -> None:
        if bindkey is not None and len(bindkey) != 16:
            raise ValueError("a BTHome bindkey is 16 bytes (32 hex characters)")
        self.device_type = device_type
        self.address = address
        self.bindkey = bindkey

    def decode(self, service_data: bytes, name: str = "") -> Decoded:
        if not service_data or len(service_data) > MAX_PAYLOAD:
            raise MalformedPayload(f"BTHome service data of {len(service_data)} bytes")
        encrypted = bool(service_data[0] & 0x01)
        if self.bindkey is not None and not encrypted:
            raise UnexpectedValue("plain advertisement from a device that has a key")
        if self.bindkey is None and encrypted:
            raise UnexpectedValue("encrypted advertisement, and no bindkey for this device")
        info = BluetoothServiceInfoBleak(
            name=name or self.address,
            address=self.address,
            rssi=0,
            manufacturer_data={},
            service_data={BTHOME_UUID: service_data},
            service_uuids=[BTHOME_UUID],
            source="trygg",
            device=None,  # type: ignore[arg-type]
            advertisement=None,
            connectable=False,
            time=0.0,
            tx_power=None,
        )
        # A fresh parser per advertisement: the library's parser carries every value it
        # has seen into later updates, and one advertisement must say only what it says.
        # Retransmissions are recognised by the packet id (``Decoded.sequence``).
        parser = BTHomeBluetoothDeviceData(bindkey=self.bindkey)
        try:
            update = parser.update(info)
        except Exception as exc:  # the library's own errors are not typed
            raise MalformedPayload(f"BTHome: {exc}") from exc
        if encrypted and not parser.bindkey_verified:
            raise UnexpectedValue("BTHome decryption failed (wrong bindkey?)")
        if not update.devices:
            raise MalformedPayload("not a BTHome v2 advertisement")
        measured = {key.key for key in update.entity_values} - {"signal_strength"}
        if not (measured or update.binary_entity_values or update.events):
            raise UnexpectedValue("no measurement in it that BTHome v2 defines")
        return self._observations(update)

    def _observations(self, update: Any) -> Decoded:
        readings: list[tuple[str, float]] = []
        signals: list[SignalState] = []
        sequence: int | None = None
        for key, value in update.entity_values.items():
            if key.key == "packet_id" and isinstance(value.native_value, int | float):
                sequence = int(value.native_value)
                continue
            metric = READINGS.get(_base(key.key))
            number = value.native_value
            if metric and isinstance(number, int | float) and not isinstance(number, bool):
                suffix = key.key[len(_base(key.key)) :]
                readings.append((metric + suffix, float(number)))
        for key, value in update.binary_entity_values.items():
            signal = SIGNALS.get(_base(key.key))
            if signal is Signal.MOTION and self.device_type is DeviceType.BED_SENSOR:
                signal = Signal.BED_OCCUPIED  # a bed sensor's presence is someone in bed
            if signal is not None and isinstance(value.native_value, bool):
                signals.append(SignalState(signal, value.native_value))
        for key, event in update.events.items():
            kind = str(getattr(event.event_type, "value", event.event_type))
            if _base(key.key) == "button" and kind in PRESSES and self.device_type in _PRESS_TYPES:
                signals.append(
                    SignalState(Signal.BUTTON_PRESS, True, momentary=True, detail={"action": kind})
                )
        firmware = None
        for info in update.devices.values():
            version = info.sw_version
            if version and not version.startswith("BTHome BLE"):  # that one is the protocol's
                firmware = version
        return Decoded(tuple(readings), tuple(signals), sequence, firmware)
