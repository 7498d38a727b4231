"""BTHome v2 advertisements (service data under UUID 0xFCD2), plain and encrypted.

Decoding is bthome-ble's, the reference parser. One ``BthomeDecoder`` (and in it one
bthome-ble parser) lives per device, with its address and key, so the library's replay
check sees every advertisement: an encrypted one whose counter went back is ``Replayed``,
a packet the library has already seen is ``Repeated``. Each new advertisement carries its
packet id as ``Decoded.sequence``, which the pipeline uses for its own duplicate check. A
device with a key must send encrypted advertisements; a plain one from it is refused.
"""

from __future__ import annotations

import logging
from typing import Any

from bthome_ble import BTHomeBluetoothDeviceData
from habluetooth import BluetoothServiceInfoBleak

from ..catalog import DeviceType, Signal
from ..errors import CodecError, MalformedPayload, Repeated, Replayed, UnexpectedValue
from .common import Decoded, SignalState, total

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
MAX_PAYLOAD = 64  # service data in one legacy advertisement is far shorter
# bthome-ble accepts a counter that went back to below this as a device that restarted
# (a battery change); above it, a counter that went back is a replay.
REPLAY_FLOOR = 100

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

# bthome-ble binary sensor keys -> signals (all: True means active), the whole table of
# BTHome v2's binary sensors: each one a signal, or nothing (NOT_SIGNALS, and why).
SIGNALS: dict[str, Signal] = {
    "smoke": Signal.SMOKE,
    "carbon_monoxide": Signal.CO,
    "gas": Signal.GAS,
    "heat": Signal.HEAT,
    "moisture": Signal.WATER_LEAK,
    "door": Signal.DOOR_OPEN,
    "window": Signal.DOOR_OPEN,
    "opening": Signal.DOOR_OPEN,
    "garage_door": Signal.DOOR_OPEN,
    "motion": Signal.MOTION,
    "moving": Signal.MOTION,
    "vibration": Signal.MOTION,
    "occupancy": Signal.MOTION,
    "presence": Signal.PRESENCE,  # someone is there: not movement (docs/devices.md)
    "tamper": Signal.TAMPER,
    "problem": Signal.DEVICE_FAULT,
    "safety": Signal.DEVICE_FAULT,  # BTHome: on means unsafe
    "battery": Signal.BATTERY_LOW,  # BTHome's "battery" binary sensor means low
}
# Binary sensors that say nothing Trygg acts on: a room's cold (its temperature is kept as
# a reading), a sound heard, mains power, a plug, charging, running, light, a link, a
# generic on/off. "lock" (on: unlocked) is a lock's own: LOCK_OPENED on a digital lock.
NOT_SIGNALS = frozenset(
    {"cold", "sound", "power", "plug", "battery_charging", "running", "light", "connectivity",
     "generic"}
)  # fmt: skip

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
    """The decoder for one device (its address and, if it encrypts, its bindkey).

    It keeps one bthome-ble parser for the device's whole life, as the library intends:
    the parser remembers the last encryption counter and packet id it accepted, refuses
    an encrypted advertisement whose counter went back (a replay of a captured one) and
    skips a packet it has already seen. The library carries earlier values into later
    updates, so what one advertisement says is what it changed in the parser.
    """

    def __init__(self, device_type: DeviceType, address: str, bindkey: bytes | None = None) -> None:
        if bindkey is not None and len(bindkey) != 16:
            raise ValueError("a BTHome bindkey is 16 bytes (32 hex characters)")
        self.device_type = device_type
        self.address = address
        self.bindkey = bindkey
        self._parser = BTHomeBluetoothDeviceData(bindkey=bindkey)
        self._values: dict[Any, Any] = {}
        self._binary: dict[Any, Any] = {}
        # bthome-ble lifts its counter check after two failed decryptions (in Home
        # Assistant a new key may be on its way). Here the key is configured, so forged
        # advertisements must not lift it: the last authentic counter is kept here too.
        self._authentic_counter = 0

    @total("BTHome advertisement")
    def decode(self, service_data: bytes, name: str = "", *, heard_at: float = 0.0) -> Decoded:
        """One advertisement, heard at ``heard_at`` (monotonic seconds): bthome-ble tells
        a radio retransmission from a new packet by its packet id and by time."""
        if not service_data or len(service_data) > MAX_PAYLOAD:
            raise MalformedPayload(f"BTHome service data of {len(service_data)} bytes")
        if service_data[0] >> 5 != 2:
            raise MalformedPayload("not a BTHome v2 advertisement")
        encrypted = bool(service_data[0] & 0x01)
        if self.bindkey is not None and not encrypted:
            raise UnexpectedValue("plain advertisement from a device that has a key")
        if self.bindkey is None and encrypted:
            raise UnexpectedValue("encrypted advertisement, and no bindkey for this device")
        counter = int.from_bytes(service_data[-8:-4], "little") if encrypted else 0
        if encrypted and REPLAY_FLOOR <= counter < self._authentic_counter:
            raise Replayed(f"encryption counter {counter} is behind {self._authentic_counter}")
        parser = self._parser
        known_counter = int(parser.encryption_counter)
        try:
            update = parser.update(_service_info(self.address, name, service_data, heard_at))
        except Exception as exc:  # the library's own errors are not typed
            raise MalformedPayload(f"BTHome: {exc}") from exc
        # bluetooth-sensor-state-data adds the signal strength to every update: not news.
        values = {
            key: value
            for key, value in _changed(update.entity_values, self._values).items()
            if key.key != "signal_strength"
        }
        binary = _changed(update.binary_entity_values, self._binary)
        self._values = dict(update.entity_values)
        self._binary = dict(update.binary_entity_values)
        if values or binary or update.events:
            if encrypted:  # the library yields values only for what it decrypted
                self._authentic_counter = counter
            return self._observations(values, binary, update)
        raise self._nothing_new(service_data, encrypted, counter, known_counter)

    def _nothing_new(
        self, service_data: bytes, encrypted: bool, counter: int, known_counter: int
    ) -> CodecError:
        """Why bthome-ble took nothing from an advertisement."""
        parser = self._parser
        if encrypted:
            if counter < known_counter:
                return Replayed(f"encryption counter {counter} is behind {known_counter}")
            if parser.encryption_counter != counter or parser.decryption_failed:
                return UnexpectedValue("BTHome decryption failed (wrong bindkey?)")
            return Repeated("the same encrypted packet again")
        start = 7 if service_data[0] & 0x02 else 1  # after the device info byte (and MAC)
        if service_data[start : start + 1] == b"\x00":  # a packet id leads the objects
            return Repeated("a packet id bthome-ble has just seen")
        return UnexpectedValue("no measurement in it that BTHome v2 defines")

    def _observations(self, values: dict[Any, Any], binary: dict[Any, Any], update: Any) -> Decoded:
        readings: list[tuple[str, float]] = []
        signals: list[SignalState] = []
        sequence: int | None = None
        for key, value in values.items():
            if key.key == "packet_id" and isinstance(value.native_value, int | float):
                sequence = int(value.native_value)
                continue
            metric = READINGS.get(_base(key.key))
            number = value.native_value
            if metric and isinstance(number, int | float) and not isinstance(number, bool):
                suffix = key.key[len(_base(key.key)) :]
                readings.append((metric + suffix, float(number)))
        for key, value in binary.items():
            name = _base(key.key)
            if name == "lock" and self.device_type is DeviceType.DIGITAL_LOCK:
                if value.native_value is True:  # unlocked
                    signals.append(SignalState(Signal.LOCK_OPENED, True, momentary=True))
                continue
            signal = SIGNALS.get(name)
            if (
                signal in (Signal.MOTION, Signal.PRESENCE)
                and self.device_type is DeviceType.BED_SENSOR
            ):
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


def _changed(now: dict[Any, Any], before: dict[Any, Any]) -> dict[Any, Any]:
    """The values an update set: bthome-ble makes a new value object for each one it parses."""
    return {key: value for key, value in now.items() if before.get(key) is not value}


def _service_info(
    address: str, name: str, service_data: bytes, heard_at: float
) -> BluetoothServiceInfoBleak:
    return BluetoothServiceInfoBleak(
        name=name or address,
        address=address,
        rssi=0,
        manufacturer_data={},
        service_data={BTHOME_UUID: service_data},
        service_uuids=[BTHOME_UUID],
        source="trygg",
        device=None,  # type: ignore[arg-type]
        advertisement=None,
        connectable=False,
        time=heard_at,
        tx_power=None,
    )
