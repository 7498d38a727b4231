"""Scenarios: a night in a home as a timeline file, played against a gateway.

A scenario (TOML; the shipped ones are in ``scenarios/``) declares the home's devices,
each on the transport a real one would use, a timeline of what happens (``[[step]]``)
and the alarms the dispatch service must end up with (``[[expect]]``). Time runs
``speed`` times faster than real time. ``gateway_config`` writes the gateway
configuration that hears exactly these devices; ``ScenarioRun`` plays the timeline.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices import DeviceType, Priority
from devices.catalog import CATALOG, EVENT_KINDS
from devices.codecs.radio import Trigger
from devices.tomlfile import parse_toml, read_text

from .bthome import BINARY
from .camera import Scene

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")

Transport = Literal["zigbee2mqtt", "ble", "ble_lock", "radio", "nmea", "camera", "native"]

# What each transport's devices can be told to do in a step, and by which types.
ACTIONS: dict[str, set[str]] = {
    "zigbee2mqtt": {"set", "press", "command", "jam", "battery", "link_lost", "link_back"},
    "ble": {"set", "press", "battery", "link_lost", "link_back"},
    "ble_lock": {"battery", "link_lost", "link_back"},
    "radio": {"press", "restore", "tamper", "battery", "link_lost", "link_back"},
    "nmea": {"walk", "stop", "indoors", "outdoors", "unplug", "plug"},
    "camera": {"scene", "low_light", "link_lost", "link_back"},
    # A GPS watch on LTE, on Trygg's native device API (trygg_sim/watch.py).
    "native": {
        "walk",
        "stop",
        "indoors",
        "outdoors",
        "press",
        "fall",
        "battery",
        "link_lost",
        "link_back",
    },
}
TYPES: dict[str, set[DeviceType]] = {
    "zigbee2mqtt": set(DeviceType) - {DeviceType.GPS_PENDANT, DeviceType.CAMERA},
    "ble": {
        DeviceType.ALARM_BUTTON,
        DeviceType.FALL_DETECTOR,
        DeviceType.DOOR_CONTACT,
        DeviceType.MOTION,
        DeviceType.BED_SENSOR,
        DeviceType.SMOKE,
        DeviceType.CO,
        DeviceType.WATER_LEAK,
    },
    "ble_lock": {DeviceType.DIGITAL_LOCK},
    "radio": {
        DeviceType.ALARM_BUTTON,
        DeviceType.FALL_DETECTOR,
        DeviceType.SMOKE,
    },
    "nmea": {DeviceType.GPS_PENDANT},
    "camera": {DeviceType.CAMERA},
    "native": {DeviceType.GPS_PENDANT},
}


class ScenarioError(Exception):
    """A scenario file that cannot be played; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_clock(text: str) -> timedelta:
    match = _CLOCK.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time of day like 02:10 or 02:10:30")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


class SafeZone(_Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=100_000)


class SimDevice(_Strict):
    """One simulated device and how its firmware behaves."""

    id: str = Field(pattern=_NAME)
    type: DeviceType
    transport: Transport
    home: str = Field(pattern=_NAME)
    resident: str | None = Field(default=None, pattern=_NAME)
    # Transport addresses; sensible ones are derived from the id when left out.
    address: str | None = Field(default=None, max_length=256)
    bindkey: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{32}$")
    radio_address: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)
    # Firmware behaviour.
    battery: int = Field(default=100, ge=0, le=100)
    drain_pct_per_day: float = Field(default=0.1, ge=0, le=100)
    low_battery_pct: int = Field(default=15, ge=0, le=100)
    clock_drift_ppm: float = Field(default=0.0, ge=-100_000, le=100_000)
    duplicate: float = Field(default=0.0, ge=0, le=1, description="share sent twice")
    late: float = Field(default=0.0, ge=0, le=1, description="share delivered late (BLE, radio)")
    rssi_dbm: int = Field(default=-65, ge=-120, le=0)
    state: dict[str, bool | int | float | str] = {}
    # Locks: how they take a command (turn the bolt, jam, or ignore it).
    lock: Literal["obeys", "jams", "silent"] | None = None
    # GPS pendants.
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    safe_zone: SafeZone | None = None
    indoors: bool = True
    # Cameras.
    scene: Scene = Scene.EMPTY
    low_light: bool = False

    @model_validator(mode="after")
    def _check(self) -> SimDevice:
        if self.type not in TYPES[self.transport]:
            speaks = ", ".join(sorted(t.value for t in TYPES[self.transport]))
            raise ValueError(
                f"device {self.id}: a {self.type.value} does not speak {self.transport} "
                f"(on {self.transport}: {speaks})"
            )
        located = self.transport in ("nmea", "native")
        if located and (self.latitude is None or self.longitude is None):
            raise ValueError(f"device {self.id}: a GPS pendant needs latitude and longitude")
        if self.bindkey is not None and self.transport != "ble":
            raise ValueError(f"device {self.id}: only BLE devices have a bindkey")
        if self.lock is not None and self.type is not DeviceType.DIGITAL_LOCK:
            raise ValueError(f"device {self.id}: only locks have a lock behaviour")
        return self

    @property
    def lock_mode(self) -> str:
        return self.lock or "obeys"

    @property
    def z2m_name(self) -> str:
        return self.address or f"{self.home}/{self.id}"

    @property
    def mac(self) -> str:
        if self.address is not None:
            return self.address.upper()
        digest = sum((i + 1) * ord(c) for i, c in enumerate(f"{self.home}/{self.id}"))
        tail = digest.to_bytes(4, "big")
        return "A4:C1:38:" + ":".join(f"{b:02X}" for b in tail[1:])

    @property
    def radio_id(self) -> int:
        if self.radio_address is not None:
            return self.radio_address
        return sum((i + 1) * ord(c) for i, c in enumerate(f"{self.home}/{self.id}")) & 0xFFFFFF


class Step(_Strict):
    at: str
    device: str = Field(pattern=_NAME)
    do: str
    args: dict[str, bool | int | float | str] = {}
    note: str = ""

    @property
    def clock(self) -> timedelta:
        return parse_clock(self.at)


class Expect(_Strict):
    kind: str
    device: str = Field(pattern=_NAME)
    priority: str | None = None
    count: int = Field(default=1, ge=1, le=1000)


RULE_KINDS = {"bed_exit_no_return", "door_open_night", "inactivity", "wandering"}
# The devices whose activity an inactivity alarm can be about (the last one active).
_ACTIVE_TYPES = (
    DeviceType.MOTION,
    DeviceType.DOOR_CONTACT,
    DeviceType.BED_SENSOR,
    DeviceType.ALARM_BUTTON,
    DeviceType.FALL_DETECTOR,
    DeviceType.DIGITAL_LOCK,
)


class Rules(_Strict):
    """The gateway's home rules for the scenario's homes (gateway/rules.py)."""

    bed_exit_return_min: float = Field(default=0, ge=0, le=1440, description="0: off")
    door_open_at_night: bool = False
    # No activity for this many minutes (the whole day counts): inactivity. 0: off.
    inactivity_min: float = Field(default=0, ge=0, le=7 * 1440)
    # First a pre-alarm this long, that any activity cancels (a logged event). 0: none.
    inactivity_pre_alarm_min: float = Field(default=0, ge=0, le=60)
    # Out of bed at night and a door opened within this many minutes: wandering. 0: off.
    wandering_min: float = Field(default=0, ge=0, le=1440)

    def kinds(self) -> dict[DeviceType, set[str]]:
        """Which device type raises which rules' alarms, for the rules switched on."""
        out: dict[DeviceType, set[str]] = {}
        if self.bed_exit_return_min:
            out.setdefault(DeviceType.BED_SENSOR, set()).add("bed_exit_no_return")
        if self.door_open_at_night:
            out.setdefault(DeviceType.DOOR_CONTACT, set()).add("door_open_night")
        if self.wandering_min:
            out.setdefault(DeviceType.DOOR_CONTACT, set()).add("wandering")
        if self.inactivity_min:
            for kind in _ACTIVE_TYPES:
                out.setdefault(kind, set()).add("inactivity")
        return out


class Scenario(_Strict):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    start: str = "00:00"
    end: str
    speed: Annotated[float, Field(gt=0, le=10_000)] = 60.0
    seed: int = 0
    rules: Rules = Rules()
    device: list[SimDevice] = Field(min_length=1)
    step: list[Step] = []
    expect: list[Expect] = []

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        for text in (self.start, self.end):
            parse_clock(text)
        by_id: dict[str, SimDevice] = {}
        for device in self.device:
            if device.id in by_id:
                raise ValueError(f"device {device.id} is declared twice")
            by_id[device.id] = device
        if self.duration <= timedelta(0):
            raise ValueError(f"end {self.end} is not after start {self.start}")
        for step in self.step:
            parse_clock(step.at)
            if step.device not in by_id:
                raise ValueError(f"step at {step.at}: no device {step.device!r}")
            device = by_id[step.device]
            if step.do not in ACTIONS[device.transport]:
                can = ", ".join(sorted(ACTIONS[device.transport]))
                raise ValueError(
                    f"step at {step.at}: a {device.transport} device cannot {step.do!r} "
                    f"(it can: {can})"
                )
            problem = _check_args(device, step)
            if problem:
                raise ValueError(f"step at {step.at}: {step.device} {step.do}: {problem}")
            if self.offset(step.at) > self.duration:
                raise ValueError(f"step at {step.at} is after the scenario ends ({self.end})")
        for expect in self.expect:
            if expect.device not in by_id:
                raise ValueError(f"expect {expect.kind}: no device {expect.device!r}")
            device = by_id[expect.device]
            kind = EVENT_KINDS.get(expect.kind)
            if kind is None:
                raise ValueError(f"expect: no event kind {expect.kind!r}")
            raised = {
                *CATALOG[device.type].alarms.values(),
                *self.rules.kinds().get(device.type, ()),
            }
            if expect.kind not in raised:
                rule = " (is its home rule on in [rules]?)" if expect.kind in RULE_KINDS else ""
                raise ValueError(f"expect: a {device.type.value} never raises {expect.kind}{rule}")
            if kind.priority is Priority.LOW:
                raise ValueError(
                    f"expect {expect.kind}: low-priority events are logged, not alarms"
                )
            if expect.priority is not None and expect.priority != kind.priority.name.lower():
                raise ValueError(
                    f"expect {expect.kind}: its priority is {kind.priority.name.lower()}, "
                    f"not {expect.priority}"
                )
        return self

    def offset(self, clock: str) -> timedelta:
        """Simulated time from the start to ``clock``, across midnight if need be."""
        delta = parse_clock(clock) - parse_clock(self.start)
        return delta if delta >= timedelta(0) else delta + timedelta(days=1)

    @property
    def duration(self) -> timedelta:
        return self.offset(self.end)

    def devices_on(self, *transports: str) -> list[SimDevice]:
        return [d for d in self.device if d.transport in transports]

    def expected(self) -> Counter[tuple[str, str]]:
        """(device, kind) -> how many alarms."""
        return Counter({(e.device, e.kind): e.count for e in self.expect})


def _check_args(device: SimDevice, step: Step) -> str | None:
    """Arguments a step's action cannot take, in words (None when they are fine)."""
    args = step.args
    if device.transport == "ble" and step.do == "set":
        unknown = set(args) - set(BINARY)
        if unknown:
            return f"BTHome has no {', '.join(sorted(unknown))} (it has {', '.join(BINARY)})"
    triggers = Trigger.__members__
    if device.transport == "radio" and str(args.get("trigger", "button")).upper() not in triggers:
        return f"trigger must be one of {', '.join(t.lower() for t in Trigger.__members__)}"
    scenes = {s.value for s in Scene}
    if device.transport == "camera" and step.do == "scene" and str(args.get("scene")) not in scenes:
        return f"scene must be one of {', '.join(s.value for s in Scene)}"
    if step.do == "battery" and not isinstance(args.get("pct"), int):
        return "needs pct = 0..100"
    if step.do == "command" and str(args.get("state", "")).upper() not in ("LOCK", "UNLOCK"):
        return 'needs state = "LOCK" or "UNLOCK"'
    if step.do == "command" and device.type is not DeviceType.DIGITAL_LOCK:
        return "only locks take commands"
    return None


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    return parse_toml(text, source, Scenario, ScenarioError, _describe)


def shipped() -> dict[str, Path]:
    """The scenarios that come with Trygg, by name (the file name without .toml)."""
    folder = resources.files("trygg_sim") / "scenarios"
    return {
        Path(item.name).stem: Path(str(item))
        for item in folder.iterdir()
        if item.name.endswith(".toml")
    }


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``night-fall``) or any scenario file by path."""
    path = Path(name_or_path)
    if not path.exists():
        known = shipped()
        if str(name_or_path) not in known:
            names = ", ".join(sorted(known))
            raise ScenarioError(f"{name_or_path}: no such file or shipped scenario ({names})")
        path = known[str(name_or_path)]
    return parse_scenario(read_text(path, ScenarioError), str(path))


def compare(expected: Counter[tuple[str, str]], alarms: Iterable[Mapping[str, Any]]) -> list[str]:
    """What differs between the expected alarms and the dispatch service's (empty: none).

    ``alarms`` are the service's alarm objects for the scenario's devices; an alarm that
    merged repeated events still counts once, as an operator sees it once.
    """
    got: Counter[tuple[str, str]] = Counter((str(a["device_id"]), str(a["kind"])) for a in alarms)
    problems = []
    for key in sorted(set(expected) | set(got)):
        want, have = expected.get(key, 0), got.get(key, 0)
        if want != have:
            device, kind = key
            problems.append(f"{kind} from {device}: expected {want}, got {have}")
    return problems
