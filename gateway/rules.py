"""Home rules: alarms that no single device raises, from what a home's devices say.

    bed_exit_no_return   at night, the bed sensor says the resident got up, and they
                         are not back within ``bed_exit_return_s``; back in bed restores it
    inactivity           no activity in the home (movement, a door, the bed, a press) for
                         ``inactivity_s``, counted only inside ``inactivity_window`` and
                         not while the home is away; the next activity restores it. With
                         ``inactivity_pre_alarm_s``, first a pre-alarm (a logged
                         ``inactivity_warning``) that any activity cancels
    door_open_night      at night, a door contact of the home opens; closing restores it
    wandering            at night, out of bed and a door of the home opened within
                         ``wandering_s``; back in bed restores it
    away_mode            the home's ``away_button`` pressed: away mode on (logged), and
                         the next press ends it; no alarm
    geofence_exit        a device with a ``safe_zone`` reports a position outside it;
                         coming back well inside restores it (devices/geo.py)

Rules are per home (``[[homes]]`` in the configuration) and off unless configured; the
geofence is per device and on wherever a device's configuration sets a safe zone. Night
is a window of local time in the home's time zone; a window whose start equals its end
is the whole day. Timers run on the monotonic clock; ``tick`` fires the ones due.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from devices import EVENT_KINDS, DeviceType, EventKind, Signal, utc_now
from devices.geo import CircleZone, PolygonZone, ZoneFence

from .config import HomeSection, SafeZone, Zone
from .registry import RegisteredDevice

BED_EXIT = EVENT_KINDS["bed_exit_no_return"]
INACTIVITY = EVENT_KINDS["inactivity"]
# What a home's devices say that is someone being active (a signal's change, or a press).
ACTIVITY = frozenset(
    {
        Signal.MOTION,
        Signal.DOOR_OPEN,
        Signal.BED_OCCUPIED,
        Signal.BUTTON_PRESS,
        Signal.LOCK_OPENED,
    }
)
DOOR_AT_NIGHT = EVENT_KINDS["door_open_night"]
WANDERING = EVENT_KINDS["wandering"]
PRE_ALARM = EVENT_KINDS["inactivity_warning"]
AWAY = EVENT_KINDS["away_mode"]
GEOFENCE_EXIT = EVENT_KINDS["geofence_exit"]
_POSITION = ("latitude", "longitude")


ZoneShape = CircleZone | PolygonZone


def _shape(zone: Zone) -> ZoneShape:
    if zone.circle is not None:
        c = zone.circle
        return CircleZone(c.latitude, c.longitude, c.radius_m)
    assert zone.polygon is not None  # the configuration checked one of them is there
    return PolygonZone(zone.polygon)


def _margin(zone: Zone, shape: ZoneShape) -> float:
    return shape.radius_m * 0.1 if isinstance(shape, CircleZone) else zone.margin_m


@dataclass(frozen=True, slots=True)
class RuleEvent:
    device: RegisteredDevice
    kind: EventKind
    active: bool
    detail: dict[str, object]


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


# How an away button's state is kept with the raised rule alarms (HomeRules.raised).
_AWAY_KEPT = "away_mode"


def _said(home: HomeSection) -> str:
    """What the configuration says of away mode: a button's state counts over this only."""
    return f"{int(home.away)}{home.away_set_at.isoformat() if home.away_set_at else ''}"


def is_night(window: str, local: datetime) -> bool:
    start, end = (_minutes(part) for part in window.split("-"))
    now = local.hour * 60 + local.minute
    if start == end:
        return True
    if start < end:
        return start <= now < end
    return now >= start or now < end  # across midnight


class HomeRules:
    def __init__(
        self,
        homes: list[HomeSection],
        *,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._mono = monotonic
        self._out_of_bed: dict[str, tuple[float, RegisteredDevice]] = {}  # device id -> since
        self._raised: set[tuple[str, str]] = set()  # (device id, kind) active now
        # device id -> (its zones as configured, their shapes, where it was)
        self._fences: dict[str, tuple[object, list[tuple[Zone, ZoneShape]], ZoneFence]] = {}
        # Per home: inactive seconds counted so far, when last counted, the device last
        # active (the one an inactivity alarm is about).
        self._inactive: dict[str, float] = {}
        self._counted_at: dict[str, float] = {}
        self._last_active: dict[str, RegisteredDevice] = {}
        self._any_device: dict[str, RegisteredDevice] = {}
        self._inactivity_raised: dict[str, RegisteredDevice] = {}
        # Per home: the pre-alarm started (when, about which device).
        self._pre_alarm: dict[str, tuple[float, RegisteredDevice]] = {}
        # Per home: out of bed at night (since when, the bed), and the door a wandering
        # alarm was raised on.
        self._got_up: dict[str, tuple[float, RegisteredDevice]] = {}
        self._wandering: dict[str, RegisteredDevice] = {}
        # Per home: away mode as its button last set it, and the configuration's word it
        # was set over (``_said``): a newer word from the centre wins over the button.
        self._away: dict[str, tuple[bool, str, str]] = {}  # home -> (away, said, button)
        self.homes: dict[str, HomeSection] = {}
        self.replace(homes)

    def raised(self) -> list[tuple[str, str]]:
        """The rule alarms raised now (device id, kind): kept across a restart, so a
        resident still outside their zone is not an alarm again, and coming back is a
        restore. With them, what each away button set (``away_mode=1@<said>``)."""
        away = [
            (button, f"{_AWAY_KEPT}={int(on)}@{said}") for on, said, button in self._away.values()
        ]
        return sorted(self._raised) + sorted(away)

    def restore(self, raised: Iterable[tuple[str, str]], device: Callable[[str], object]) -> None:
        """What the previous run had raised; ``device`` finds a device by id (None: gone)."""
        kinds = {
            BED_EXIT.name,
            DOOR_AT_NIGHT.name,
            GEOFENCE_EXIT.name,
            INACTIVITY.name,
            WANDERING.name,
        }
        for device_id, kind in raised:
            found = device(device_id)
            if not isinstance(found, RegisteredDevice):
                continue
            if kind.startswith(f"{_AWAY_KEPT}="):
                on, _, said = kind.removeprefix(f"{_AWAY_KEPT}=").partition("@")
                self._away[found.config.home] = (on == "1", said, device_id)
                continue
            if kind not in kinds:
                continue
            self._raised.add((device_id, kind))
            home = found.config.home
            if kind == INACTIVITY.name:
                self._inactivity_raised[home] = found
            elif kind == WANDERING.name:
                self._wandering[home] = found

    def replace(self, homes: list[HomeSection]) -> None:
        """New rules for the homes (a configuration from the dispatch service); a rule
        already raised stays raised until its device says otherwise."""
        self.homes = {h.id: h for h in homes}
        self._zones = {h.id: ZoneInfo(h.timezone) if h.timezone else None for h in homes}
        self._fences.clear()  # each device's zone is read again from its home

    def _local(self, home_id: str) -> datetime:
        zone = self._zones[home_id]
        now = self._clock()
        return now.astimezone(zone) if zone else now.astimezone()

    def night(self, home_id: str) -> bool:
        return is_night(self.homes[home_id].night, self._local(home_id))

    def away(self, home: HomeSection) -> bool:
        """Away mode: as the home's button last set it, unless the configuration has said
        otherwise since (the centre's newer word); else as configured."""
        button = self._away.get(home.id)
        if button is not None and button[1] == _said(home):
            return button[0]
        return home.away

    def away_button(self, device: RegisteredDevice) -> bool:
        home = self.homes.get(device.config.home)
        return home is not None and home.away_button == device.id

    def toggle_away(self, device: RegisteredDevice) -> list[RuleEvent]:
        """The home's away button pressed: away mode on, or off again. Every change is told
        (a logged ``away_mode`` and its restore), whoever set the state it changes."""
        home = self.homes[device.config.home]
        away = not self.away(home)
        self._away[home.id] = (away, _said(home), device.id)
        detail: dict[str, object] = {"by": "button", "button": device.id}
        due = [RuleEvent(device, AWAY, away, detail)]
        if away:
            self._inactive[home.id] = 0.0
            due += self._clear_inactivity(home.id, {"away": True})
        return due

    def activity(self, device: RegisteredDevice, signal: Signal, active: bool) -> list[RuleEvent]:
        """A device said something that is someone being active (movement, a door opened
        or closed, the bed, a press): the home's inactivity count starts again."""
        home = self.homes.get(device.config.home)
        if home is None or signal not in ACTIVITY:
            return []
        if signal is Signal.MOTION and not active:
            return []  # "no motion any more" is no one moving
        self._inactive[home.id] = 0.0
        self._counted_at[home.id] = self._mono()
        self._last_active[home.id] = device
        return self._clear_inactivity(home.id, {"activity": device.id})

    def _clear_inactivity(self, home_id: str, detail: dict[str, object]) -> list[RuleEvent]:
        due: list[RuleEvent] = []
        warned = self._pre_alarm.pop(home_id, None)
        if warned is not None:  # cancelled in time: the resident moved, pressed, or left
            due += self._clear(warned[1], PRE_ALARM, {**detail, "cancelled": True})
        raised = self._inactivity_raised.pop(home_id, None)
        return due if raised is None else due + self._clear(raised, INACTIVITY, detail)

    def _count_inactivity(self, now: float) -> list[RuleEvent]:
        """Each home's inactive time: counted inside its window, not while away."""
        due: list[RuleEvent] = []
        for home in self.homes.values():
            if not home.inactivity_s:
                continue
            last = self._counted_at.get(home.id, now)
            self._counted_at[home.id] = now
            if self.away(home):
                self._inactive[home.id] = 0.0
                due += self._clear_inactivity(home.id, {"away": True})
                continue
            if not is_night(home.inactivity_window, self._local(home.id)):
                continue  # outside the window: the count waits
            counted = self._inactive.get(home.id, 0.0) + max(0.0, now - last)
            self._inactive[home.id] = counted
            device = self._last_active.get(home.id) or self._any_device.get(home.id)
            raised = home.id in self._inactivity_raised
            if counted < home.inactivity_s or device is None or raised:
                continue
            detail: dict[str, object] = {"inactive_for_s": round(counted), "home": home.id}
            if home.inactivity_pre_alarm_s:
                warned = self._pre_alarm.get(home.id)
                if warned is None:  # first the pre-alarm: the resident may still cancel it
                    self._pre_alarm[home.id] = (now, device)
                    warning = {**detail, "pre_alarm_s": home.inactivity_pre_alarm_s}
                    due += self._raise(device, PRE_ALARM, warning)
                    continue
                if now - warned[0] < home.inactivity_pre_alarm_s:
                    continue
                del self._pre_alarm[home.id]
                due += self._clear(warned[1], PRE_ALARM, {"raised": True})
                detail["pre_alarm_s"] = home.inactivity_pre_alarm_s
            self._inactivity_raised[home.id] = device
            due += self._raise(device, INACTIVITY, detail)
        return due

    def known(self, device: RegisteredDevice) -> None:
        """A device of a home was heard: an inactivity alarm has a device to be about even
        when nothing in the home was ever active."""
        self._any_device.setdefault(device.config.home, device)

    def observe(self, device: RegisteredDevice, signal: Signal, active: bool) -> list[RuleEvent]:
        """A change of state of one device's signal; the rule events it causes at once."""
        home = self.homes.get(device.config.home)
        if home is None:
            return []
        kind = device.config.type
        if kind is DeviceType.BED_SENSOR and signal is Signal.BED_OCCUPIED:
            return self._bed(home, device, active)
        due: list[RuleEvent] = []
        if kind is DeviceType.DOOR_CONTACT and signal is Signal.DOOR_OPEN:
            night = active and self.night(home.id)
            up = self._got_up.get(home.id)
            if night and home.wandering_s and up is not None:
                up_for = self._mono() - up[0]
                if up_for <= home.wandering_s and home.id not in self._wandering:
                    self._wandering[home.id] = device
                    detail = {"door": device.id, "bed": up[1].id, "up_for_s": round(up_for)}
                    due += self._raise(device, WANDERING, detail)
            if home.door_open_at_night:
                if night:
                    due += self._raise(device, DOOR_AT_NIGHT, {"door": device.id})
                elif not active:
                    due += self._clear(device, DOOR_AT_NIGHT, {"closed": True})
        return due

    def _bed(self, home: HomeSection, bed: RegisteredDevice, occupied: bool) -> list[RuleEvent]:
        """The bed: out at night starts the bed-exit timer and the wandering watch; back in
        restores both."""
        due: list[RuleEvent] = []
        if not occupied and self.night(home.id):
            if home.bed_exit_return_s:
                self._out_of_bed[bed.id] = (self._mono(), bed)
            if home.wandering_s:
                self._got_up[home.id] = (self._mono(), bed)
            return due
        self._out_of_bed.pop(bed.id, None)
        if not occupied:
            return due
        self._got_up.pop(home.id, None)
        door = self._wandering.pop(home.id, None)
        if door is not None:
            due += self._clear(door, WANDERING, {"back_in_bed": bed.id})
        return due + self._clear(bed, BED_EXIT, {"back_in_bed": True})

    def observe_readings(
        self, device: RegisteredDevice, readings: Sequence[tuple[str, float]]
    ) -> list[RuleEvent]:
        """A device's readings; the rule events they cause (the geofence, on a position)."""
        # Any device whose configuration carries safe zones (today the NMEA receivers).
        zone: SafeZone | None = getattr(device.config, "safe_zone", None)
        zones: list[Zone] = getattr(device.config, "zones", [])
        if zone is None and not zones:
            return []
        position = {m: v for m, v in readings if m in _POSITION}
        if len(position) != 2:
            return []  # no valid fix in this message
        key = (zone, tuple(zones))
        known = self._fences.get(device.id)
        if known is None or known[0] != key:  # a device paired again may have new zones
            was_outside = (device.id, GEOFENCE_EXIT.name) in self._raised
            shapes: list[tuple[Zone, ZoneShape]] = [(z, _shape(z)) for z in zones]
            known = self._fences[device.id] = (key, shapes, ZoneFence(outside=was_outside))
        _key, shapes, fence = known
        counting = [(s, _margin(z, s)) for z, s in shapes if self._counts(z, device)]
        if zone is not None:
            circle = CircleZone(zone.latitude, zone.longitude, zone.radius_m)
            counting.append((circle, zone.radius_m * 0.1))
        outside = fence.update(position["latitude"], position["longitude"], counting)
        if outside is None:
            return []  # no zone counts at this hour: nothing to judge by
        detail: dict[str, object] = {**position}
        if zone is not None:  # the operator's map draws the circle that was left
            detail |= {
                "zone_latitude": zone.latitude,
                "zone_longitude": zone.longitude,
                "zone_radius_m": zone.radius_m,
            }
        names = [z.name for z, s in shapes if self._counts(z, device)]
        if names:
            detail["zones"] = names
        if outside:
            return self._raise(device, GEOFENCE_EXIT, detail)
        return self._clear(device, GEOFENCE_EXIT, detail)

    def _counts(self, zone: Zone, device: RegisteredDevice) -> bool:
        """Whether a zone counts now: always, or inside its hours in the home's time."""
        if zone.hours is None:
            return True
        home = device.config.home
        local = self._local(home) if home in self._zones else self._clock().astimezone()
        return is_night(zone.hours, local)

    def tick(self) -> list[RuleEvent]:
        """The rule events whose time has come (call about once a second)."""
        now = self._mono()
        due = self._count_inactivity(now)
        for device_id, (since, device) in list(self._out_of_bed.items()):
            limit = self.homes[device.config.home].bed_exit_return_s
            if now - since >= limit:
                del self._out_of_bed[device_id]
                away = timedelta(seconds=round(now - since))
                due += self._raise(device, BED_EXIT, {"out_of_bed_for_s": away.total_seconds()})
        return due

    def _raise(
        self, device: RegisteredDevice, kind: EventKind, detail: dict[str, object]
    ) -> list[RuleEvent]:
        key = (device.id, kind.name)
        if key in self._raised:
            return []
        self._raised.add(key)
        return [RuleEvent(device, kind, True, detail)]

    def _clear(
        self, device: RegisteredDevice, kind: EventKind, detail: dict[str, object]
    ) -> list[RuleEvent]:
        key = (device.id, kind.name)
        if key not in self._raised:
            return []
        self._raised.discard(key)
        return [RuleEvent(device, kind, False, detail)]
