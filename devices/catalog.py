"""The device catalog: what each kind of device is, how often it must check in,
and which of its signals are alarms, at which priority and with which codes.

Tables, not branches: adding a device type or an event kind is one row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from .model import Priority


class DeviceType(StrEnum):
    ALARM_BUTTON = "alarm_button"
    FALL_DETECTOR = "fall_detector"
    DOOR_CONTACT = "door_contact"
    MOTION = "motion"
    BED_SENSOR = "bed_sensor"
    SMOKE = "smoke"
    CO = "co"
    WATER_LEAK = "water_leak"
    GPS_PENDANT = "gps_pendant"
    DIGITAL_LOCK = "digital_lock"
    CAMERA = "camera"
    GAS = "gas"
    HEAT = "heat"
    PRESENCE = "presence"
    SIREN = "siren"  # a sounder or light the gateway sets off (the inactivity pre-alarm)


class Signal(StrEnum):
    """What a codec reports a device as saying, before any home rule applies."""

    BUTTON_PRESS = "button_press"
    FALL = "fall"
    SMOKE = "smoke"
    CO = "co"
    WATER_LEAK = "water_leak"
    DOOR_OPEN = "door_open"
    MOTION = "motion"
    PRESENCE = "presence"  # someone is in the room (a radar), moving or not
    BED_OCCUPIED = "bed_occupied"
    TAMPER = "tamper"
    BATTERY_LOW = "battery_low"
    LOCK_JAMMED = "lock_jammed"
    LOCK_OPENED = "lock_opened"
    GEOFENCE_EXIT = "geofence_exit"
    GAS = "gas"
    HEAT = "heat"
    # Raised by the gateway itself, not by a message: supervision and the radio link.
    DEVICE_SILENT = "device_silent"
    RADIO_LOST = "radio_lost"
    # The device says it has a fault (a detector's sensor, BTHome's "problem"/"safety").
    DEVICE_FAULT = "device_fault"


@dataclass(frozen=True, slots=True)
class EventKind:
    """An event the platform knows: its priority and the codes external centres speak."""

    name: str
    priority: Priority
    contact_id: int  # Ademco Contact ID event code (qualifier 1 = new, 3 = restore)
    description: str


EVENT_KINDS: dict[str, EventKind] = {
    k.name: k
    for k in (
        EventKind("alarm_button", Priority.CRITICAL, 101, "Alarm button pressed"),
        EventKind("fall", Priority.CRITICAL, 100, "Fall detected"),
        EventKind("smoke", Priority.CRITICAL, 111, "Smoke detected"),
        EventKind("co", Priority.CRITICAL, 162, "Carbon monoxide detected"),
        # A gas (natural gas, LPG) detector; a heat detector (a kitchen's, where smoke
        # detectors false-alarm): Contact ID 151 "gas detected", 114 "heat".
        EventKind("gas", Priority.CRITICAL, 151, "Gas detected"),
        EventKind("heat", Priority.CRITICAL, 114, "Heat detected"),
        EventKind("resident_not_seen", Priority.CRITICAL, 100, "Resident not seen in camera check"),
        EventKind("geofence_exit", Priority.HIGH, 150, "Left the safe zone"),
        EventKind("door_open_night", Priority.HIGH, 134, "Door opened at night"),
        EventKind("bed_exit_no_return", Priority.HIGH, 150, "Out of bed and not back"),
        EventKind("inactivity", Priority.HIGH, 102, "No activity"),
        # Up at night and a door of the home opened soon after (gateway/rules.py): a
        # resident with dementia walking out. Contact ID 150 (24-hour auxiliary), as the
        # other home rules that no device raises by itself.
        EventKind("wandering", Priority.HIGH, 150, "Up at night and the door opened"),
        # Raised by the dispatch service: a door staff opened is still not locked, or its
        # home's door contact still open, after the visit or the alarm and the grace
        # (cloud/doors.py). High, with the wandering alarms: an open door is how a
        # resident with dementia walks out, and anyone can walk in; not critical, as
        # nobody is known to be hurt. Contact ID 426 is "access door propped open".
        EventKind("door_left_open", Priority.HIGH, 426, "Door left open or unlocked after a visit"),
        EventKind("water_leak", Priority.NORMAL, 154, "Water leak"),
        EventKind("device_silent", Priority.NORMAL, 381, "Device has stopped checking in"),
        EventKind("radio_lost", Priority.NORMAL, 355, "Radio link to the device lost"),
        EventKind("battery_low", Priority.NORMAL, 384, "Battery low"),
        EventKind("tamper", Priority.NORMAL, 383, "Device tampered with"),
        # Contact ID 330: system peripheral trouble.
        EventKind("device_fault", Priority.NORMAL, 330, "Device reports a fault"),
        EventKind("lock_jammed", Priority.NORMAL, 380, "Lock jammed"),
        EventKind("gateway_offline", Priority.NORMAL, 350, "Gateway offline"),
        # The gateway's own store: writes failed for a while, or it was found damaged.
        EventKind("store_fault", Priority.NORMAL, 300, "Gateway could not store events"),
        EventKind("store_damaged", Priority.NORMAL, 300, "Gateway store damaged"),
        # The dispatch service's host or database clock jumped (Contact ID: time/date reset).
        EventKind("clock_step", Priority.NORMAL, 625, "Dispatch clock jumped"),
        EventKind("lock_opened", Priority.LOW, 422, "Lock opened"),
        EventKind("check_done", Priority.LOW, 602, "Check done"),
        # The inactivity rule's pre-alarm in the home: the resident may still cancel it by
        # moving or pressing; logged. Its restore: cancelled, or raised as inactivity.
        EventKind("inactivity_warning", Priority.LOW, 102, "No activity: pre-alarm"),
        # Away mode set (by staff, an operator, or the home's away button), and its restore
        # when it ends; logged. Contact ID 401: armed away / open-close by user.
        EventKind("away_mode", Priority.LOW, 401, "Resident away"),
    )
}

# What a gateway says about itself rather than about one of its devices: such an event
# carries the gateway's own id as its device id (and "gateway" as its device type), so
# the dispatch service takes it without looking the device up in the gateway's inventory.
GATEWAY_KINDS = frozenset({"store_fault", "store_damaged"})

# A lock's own events as both lock logs write them (gateway/store.py, cloud/locklog.py):
# (kind, restore) -> the entry's action.
LOCK_EVENT_ACTIONS: dict[tuple[str, bool], str] = {
    ("lock_opened", False): "opened",
    ("lock_jammed", False): "jammed",
    ("lock_jammed", True): "jam_cleared",
}


def lock_event_cause(detail: Mapping[str, object]) -> str | None:
    """What the lock says made it happen: a BLE lock's cause (keypad, remote, manual,
    auto_relock), or a Zigbee2MQTT lock's action (keypad_unlock, rfid_unlock, ...)."""
    for key in ("cause", "action"):
        value = detail.get(key)
        if isinstance(value, str) and value:
            return value[:64]
    return None


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One catalog row."""

    type: DeviceType
    label: str
    checkin: timedelta
    alarms: dict[Signal, str]  # signal -> event kind name

    def event_kind(self, signal: Signal) -> EventKind | None:
        name = self.alarms.get(signal)
        return None if name is None else EVENT_KINDS[name]


_TECHNICAL: dict[Signal, str] = {
    Signal.BATTERY_LOW: "battery_low",
    Signal.TAMPER: "tamper",
    Signal.DEVICE_FAULT: "device_fault",
    Signal.DEVICE_SILENT: "device_silent",
    Signal.RADIO_LOST: "radio_lost",
}

# Check-in intervals follow what the radios do: battery Zigbee devices report at least
# every 50-60 min; mains devices (camera, lock bridge) are expected every few minutes.
CATALOG: dict[DeviceType, DeviceSpec] = {
    s.type: s
    for s in (
        DeviceSpec(
            DeviceType.ALARM_BUTTON,
            "Alarm button / pendant",
            timedelta(hours=1),
            {Signal.BUTTON_PRESS: "alarm_button", Signal.FALL: "fall", **_TECHNICAL},
        ),
        DeviceSpec(
            DeviceType.FALL_DETECTOR,
            "Fall detector",
            timedelta(hours=1),
            {Signal.FALL: "fall", Signal.BUTTON_PRESS: "alarm_button", **_TECHNICAL},
        ),
        DeviceSpec(DeviceType.DOOR_CONTACT, "Door/window contact", timedelta(hours=2), _TECHNICAL),
        DeviceSpec(DeviceType.MOTION, "Motion sensor", timedelta(hours=2), _TECHNICAL),
        DeviceSpec(DeviceType.BED_SENSOR, "Bed sensor", timedelta(hours=2), _TECHNICAL),
        DeviceSpec(
            DeviceType.SMOKE,
            "Smoke detector",
            timedelta(hours=2),
            {Signal.SMOKE: "smoke", **_TECHNICAL},
        ),
        DeviceSpec(
            DeviceType.CO, "CO detector", timedelta(hours=2), {Signal.CO: "co", **_TECHNICAL}
        ),
        DeviceSpec(
            DeviceType.WATER_LEAK,
            "Water leak sensor",
            timedelta(hours=2),
            {Signal.WATER_LEAK: "water_leak", **_TECHNICAL},
        ),
        DeviceSpec(
            DeviceType.GPS_PENDANT,
            "GPS pendant",
            timedelta(minutes=15),
            {
                Signal.BUTTON_PRESS: "alarm_button",
                Signal.FALL: "fall",
                Signal.GEOFENCE_EXIT: "geofence_exit",
                **_TECHNICAL,
            },
        ),
        DeviceSpec(
            DeviceType.DIGITAL_LOCK,
            "Digital lock",
            timedelta(minutes=30),
            {Signal.LOCK_JAMMED: "lock_jammed", Signal.LOCK_OPENED: "lock_opened", **_TECHNICAL},
        ),
        DeviceSpec(
            DeviceType.GAS, "Gas detector", timedelta(hours=2), {Signal.GAS: "gas", **_TECHNICAL}
        ),
        DeviceSpec(
            DeviceType.HEAT,
            "Heat detector",
            timedelta(hours=2),
            {Signal.HEAT: "heat", **_TECHNICAL},
        ),
        # A presence (mmWave radar) sensor: what it says is movement, for the home rules.
        DeviceSpec(DeviceType.PRESENCE, "Presence sensor", timedelta(hours=2), _TECHNICAL),
        DeviceSpec(DeviceType.SIREN, "Siren / indicator", timedelta(hours=2), _TECHNICAL),
        DeviceSpec(
            DeviceType.CAMERA,
            "Night camera",
            timedelta(minutes=5),
            {Signal.DEVICE_SILENT: "device_silent"},
        ),
    )
}
