"""The gateway's TOML configuration, validated once at start.

An error names the file, the key and what was expected; nothing deeper in the
gateway reads raw configuration.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, TypeAlias, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    model_validator,
)

from devices import DeviceType
from devices.brokertls import check_link, readable_file
from devices.codecs.nmea import MAX_HDOP, MIN_SATELLITES
from devices.geo import PolygonZone
from devices.tomlfile import parse_toml, read_text
from devices.wire import COMMAND_CLOCK_SKEW_S, GATEWAY_ID_PATTERN

from .trusted_keys import TrustedKeys, TrustedKeysError, load_trusted_keys

_NAME = r"^[A-Za-z0-9_.:-]{1,128}$"
MacAddress = Annotated[
    str, Field(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"), AfterValidator(str.upper)
]


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewaySection(_Strict):
    id: str = Field(pattern=GATEWAY_ID_PATTERN)
    # SCAIP allows 1-1440 min between reports; the brief's default is 60 s.
    heartbeat_interval_s: int = Field(default=60, ge=60, le=86400)
    # The devices' states to the dispatch service (gateway/devicestate.py): changes at most
    # this often, and every device's state this often (and on every connect).
    device_changes_s: float = Field(default=5.0, ge=0.1, le=300)
    device_summary_s: float = Field(default=900.0, ge=10, le=86400)


class StoreSection(_Strict):
    path: Path = Path("trygg-gateway.db")
    # Readings are thinned, then dropped oldest first, to keep the database under this;
    # events are never dropped for it.
    budget_mb: float = Field(default=512, gt=0)
    # Preallocated beside the store and released for events when the disk is full, so an
    # alarm still finds room when readings or another program filled the filesystem.
    reserve_mb: float = Field(default=16, ge=0)
    # How often the whole file is read back to find damage while the process still has
    # the pages cached (a store deleted or replaced is noticed within a second anyway).
    integrity_check_s: float = Field(default=3600, gt=0)


ReadableFile = Annotated[Path, AfterValidator(readable_file)]


class BrokerSection(_Strict):
    """An MQTT broker. TLS (1.2 or later) when ``ca_file`` is set or ``tls`` is true; the
    server's certificate is checked against ``ca_file`` (the system's CAs without one).
    ``cert_file`` + ``key_file``: a client certificate, for brokers that take the identity
    from it (mosquitto's use_identity_as_username). Plain TCP only to a loopback host."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    ca_file: ReadableFile | None = None
    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = None
    tls: bool | None = None

    @model_validator(mode="after")
    def _secure(self) -> BrokerSection:
        check_link(self.host, self.tls, self.ca_file, self.cert_file, self.key_file)
        return self

    @property
    def uses_tls(self) -> bool:
        return check_link(self.host, self.tls, self.ca_file, self.cert_file, self.key_file)


class Zigbee2MqttSection(BrokerSection):
    base_topic: str = Field(default="zigbee2mqtt", pattern=r"^[^#+]+$")
    max_payload_bytes: int = Field(default=16 * 1024, ge=256, le=1024 * 1024)
    # Messages waiting for the pipeline (memory: at most this many payloads). Past it the
    # oldest QoS 0 message is dropped and counted; QoS 1 ones wait at the broker instead.
    max_queued: int = Field(default=10_000, ge=10, le=1_000_000)


class UplinkSection(BrokerSection):
    ack_timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_in_flight: int = Field(default=64, ge=1, le=1000)


class TimeSeriesSection(_Strict):
    """An InfluxDB v2 write API (InfluxDB 2, or anything speaking /api/v2/write)."""

    url: str = Field(pattern=r"^https?://")
    token: str = ""
    org: str = "trygg"
    bucket: str = "trygg"
    batch_size: int = Field(default=10_000, ge=1, le=100_000)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    poll_s: float = Field(default=1.0, gt=0, le=60)


class ApiSection(_Strict):
    """The gateway's local HTTP API: /healthz and /metrics, the technicians' /devices, and
    the native devices' /dev/v1 (HTTPS with ``tls_cert_file`` and ``tls_key_file``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    # Required by the technician routes (/devices) when the API listens beyond loopback.
    technician_token: str | None = Field(default=None, min_length=16, max_length=256)
    tls_cert_file: ReadableFile | None = None
    tls_key_file: ReadableFile | None = None

    @model_validator(mode="after")
    def _tls(self) -> ApiSection:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("give tls_cert_file and tls_key_file together")
        return self


class NativeSection(_Strict):
    """Devices on Trygg's own protocol (docs/native-api.md). They publish on the home
    broker (the ``[zigbee2mqtt]`` one) under ``trygg/v1/dev/<device_id>/<kind>``, each
    with its own broker login, or post to the API's ``/dev/v1`` routes."""

    mqtt: bool = True


class BleSection(_Strict):
    """BLE scanning. ``sim`` takes advertisements from the simulator over a local UDP
    socket instead of a radio, through the same scanner callback path."""

    backend: Literal["bleak", "sim"] = "bleak"
    adapter: str | None = Field(default=None, pattern=r"^hci[0-9]{1,2}$")
    scanning_mode: Literal["active", "passive"] = "active"
    # A scanner that has heard nothing for this long is restarted (BlueZ scanners stall).
    quiet_restart_s: float = Field(default=60.0, ge=1, le=3600)
    sim_host: str = "127.0.0.1"
    sim_port: int = Field(default=9750, ge=0, le=65535)
    # BLE locks' GATT through the simulator's loopback TCP server on this port instead of
    # a radio (docs/simulator.md); None: the platform's bleak backend.
    sim_gatt_port: int | None = Field(default=None, ge=1, le=65535)
    max_queue: int = Field(default=10_000, ge=10, le=1_000_000)


class CommandsSection(_Strict):
    """Signed commands from the dispatch service (docs/security.md, "Signed commands").

    Without ``trusted_keys_file`` every command is refused ``commands_disabled``."""

    trusted_keys_file: Path | None = None
    # How long a device has to confirm that it did what it was told.
    no_answer_s: float = Field(default=10.0, gt=0, le=120)
    # The clock difference accepted between this gateway and the dispatch service.
    clock_skew_s: float = Field(default=COMMAND_CLOCK_SKEW_S, ge=0, le=300)
    _keys: TrustedKeys | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load(self) -> CommandsSection:
        if self.trusted_keys_file is not None:
            try:
                self._keys = load_trusted_keys(self.trusted_keys_file)
            except TrustedKeysError as exc:
                raise ValueError(f"trusted_keys_file: {exc}") from None
        return self

    @property
    def trusted_keys(self) -> TrustedKeys | None:
        """The keys read from ``trusted_keys_file`` when the configuration was loaded."""
        return self._keys


class SerialPort(_Strict):
    """One serial device: a social-alarm radio receiver or a GPS receiver."""

    name: str = Field(pattern=_NAME)
    path: str = Field(min_length=1, max_length=4096, description="e.g. /dev/serial/by-id/...")
    protocol: Literal["radio", "nmea"]
    baudrate: int | None = Field(default=None, ge=1200, le=4_000_000)
    # Devices behind a port that stays away this long are reported as radio lost.
    lost_after_s: float = Field(default=30.0, gt=0, le=3600)

    @property
    def speed(self) -> int:
        if self.baudrate is not None:
            return self.baudrate
        return 115_200 if self.protocol == "radio" else 4800  # NMEA 0183's standard rate


class SafeZone(_Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    radius_m: float = Field(gt=0, le=100_000)


class Zone(_Strict):
    """One of a GPS pendant's safe zones: a circle or a polygon of (latitude, longitude)
    corners, that counts always or only at ``hours`` (local time, the home's zone)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")
    circle: SafeZone | None = None
    polygon: list[tuple[float, float]] | None = Field(default=None, min_length=3, max_length=200)
    hours: str | None = Field(
        default=None, pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
    )
    # Back inside only once this far inside a polygon (a circle: 10 % of its radius).
    margin_m: float = Field(default=20.0, ge=0, le=10_000)

    @model_validator(mode="after")
    def _one_shape(self) -> Zone:
        if (self.circle is None) == (self.polygon is None):
            raise ValueError(f"zone {self.name}: give a circle or a polygon, one of them")
        if self.polygon is not None:
            for lat, lon in self.polygon:
                if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                    raise ValueError(f"zone {self.name}: corner {lat}, {lon} is not on Earth")
            try:
                PolygonZone(self.polygon)
            except ValueError as exc:
                raise ValueError(f"zone {self.name}: {exc}") from None
        return self


_HHMM = r"([01]\d|2[0-3]):[0-5]\d"


class HomeSection(_Strict):
    """Home rules for one home (gateway/rules.py); each is off unless set."""

    id: str = Field(pattern=_NAME)
    # Night, in the home's local time; start == end is the whole day.
    night: str = Field(
        default="22:00-07:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
    )
    timezone: str | None = Field(default=None, description="IANA name; default the gateway's")
    # Out of bed at night and not back within this many seconds: bed_exit_no_return.
    bed_exit_return_s: int = Field(default=0, ge=0, le=86400)
    # A door contact opening at night: door_open_night.
    door_open_at_night: bool = False
    # No activity (movement, a door, the bed, a press) for this long, counted only within
    # inactivity_window (local time; start == end: the whole day): inactivity. 0: off.
    inactivity_s: int = Field(default=0, ge=0, le=7 * 86400)
    inactivity_window: str = Field(
        default="00:00-00:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
    )
    # Before raising inactivity, a pre-alarm for this many seconds (the centre is told,
    # as a logged event): any activity in the home (a press, movement) cancels it. 0: none.
    inactivity_pre_alarm_s: int = Field(default=0, ge=0, le=3600)
    # A Zigbee2MQTT siren or indicator of the home (a device id) that the pre-alarm sets
    # off, so the resident knows to move or press; stopped when it ends.
    pre_alarm_signal: str | None = Field(default=None, pattern=_NAME)
    # The resident is away (set by staff, an operator, or the configuration): the
    # inactivity rule does not count, and one raised is cleared.
    away: bool = False
    # When the centre last set ``away`` (or ended it): a newer one overrides what the away
    # button set since.
    away_set_at: datetime | None = None
    # A button by the door (a device id of this home) whose press sets away mode and the
    # next ends it: no alarm. Never the resident's alarm pendant.
    away_button: str | None = Field(default=None, pattern=_NAME)
    # Out of bed at night and a door of the home opened within this many seconds:
    # wandering (a resident with dementia walking out). Back in bed restores it. 0: off.
    wandering_s: int = Field(default=0, ge=0, le=86400)

    @model_validator(mode="after")
    def _zone(self) -> HomeSection:
        if self.timezone is not None:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"home {self.id}: unknown time zone {self.timezone!r}") from None
        return self


class _Device(_Strict):
    id: str = Field(pattern=_NAME)
    type: DeviceType
    home: str = Field(pattern=_NAME)
    resident: str | None = Field(default=None, pattern=_NAME)
    # Overrides the catalog's check-in interval for this one device.
    checkin_s: int | None = Field(default=None, ge=10, le=7 * 86400)

    def _require(self, transport: str, *types: DeviceType) -> None:
        if self.type not in types:
            allowed = ", ".join(t.value for t in types)
            raise ValueError(f"a {transport} device must be of type {allowed}")


class Zigbee2MqttDevice(_Device):
    transport: Literal["zigbee2mqtt"] = "zigbee2mqtt"
    address: str = Field(min_length=1, max_length=256, description="friendly name in Zigbee2MQTT")


class BleDevice(_Device):
    """A BTHome v2 device; ``bindkey`` (32 hex characters) when it encrypts."""

    transport: Literal["ble"]
    address: MacAddress
    bindkey: str | None = Field(default=None, pattern=r"^[0-9A-Fa-f]{32}$")

    @property
    def key(self) -> bytes | None:
        return None if self.bindkey is None else bytes.fromhex(self.bindkey)


class BleLockDevice(_Device):
    """A digital lock on a BLE GATT link (docs/ble-lock.md)."""

    transport: Literal["ble_lock"]
    address: MacAddress

    @model_validator(mode="after")
    def _check(self) -> BleLockDevice:
        self._require("ble_lock", DeviceType.DIGITAL_LOCK)
        return self


class RadioDevice(_Device):
    """A device heard by a social-alarm radio receiver on a serial port."""

    transport: Literal["radio"]
    port: str = Field(pattern=_NAME, description="the name of a [[serial]] port")
    radio_address: int = Field(ge=0, le=0xFFFFFFFF)

    @property
    def address(self) -> str:
        return radio_address(self.port, self.radio_address)


class _Located(_Strict):
    """What a device that reports positions carries: its safe zones, whether positions
    are kept (the resident's consent to tracking), and how good a fix must be."""

    safe_zone: SafeZone | None = None
    # More safe zones (the garden by day, the day centre on weekdays' hours): outside all
    # that count now is leaving them (gateway/rules.py).
    zones: list[Zone] = Field(default_factory=list, max_length=16)
    # The resident consented to being tracked: positions are kept as readings (the
    # time-series store). Without it a position serves the safe zones and is sent with
    # an alarm only, and is not kept.
    tracking: bool = False
    # A position is used (kept, checked against the zone) only from a fix this good.
    min_satellites: int = Field(default=MIN_SATELLITES, ge=0, le=64)
    max_hdop: float = Field(default=MAX_HDOP, gt=0, le=99.9)


class GpsDevice(_Located, _Device):
    """A GPS receiver speaking NMEA 0183 on a serial port; optionally a safe zone."""

    transport: Literal["nmea"]
    port: str = Field(pattern=_NAME, description="the name of a [[serial]] port")

    @property
    def address(self) -> str:
        return self.port

    @model_validator(mode="after")
    def _check(self) -> GpsDevice:
        self._require("nmea", DeviceType.GPS_PENDANT)
        return self


class NativeDevice(_Located, _Device):
    """A device speaking Trygg's own protocol over MQTT or HTTPS (docs/native-api.md): an
    LTE or Wi-Fi GPS alarm, a watch, a detector with its own uplink. ``credential_sha256``:
    the SHA-256 (hex) of its credential, a random token it was given at installation
    (``trygg gateway devices credential``); the token itself is never configured."""

    transport: Literal["native"]
    credential_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    # A fix less accurate than this is not used for the zones or kept (an alarm still
    # carries it, with its accuracy).
    max_accuracy_m: float = Field(default=100.0, gt=0, le=100_000)

    @property
    def address(self) -> str:
        return self.id

    @model_validator(mode="after")
    def _check(self) -> NativeDevice:
        if self.type in (DeviceType.DIGITAL_LOCK, DeviceType.CAMERA):
            raise ValueError(f"a {self.type.value} cannot be a native device (it takes commands)")
        return self


class CameraDevice(_Device):
    """A night camera: any RTSP or HTTP MJPEG URL OpenCV can open."""

    transport: Literal["camera"]
    url: str = Field(pattern=r"^(rtsps?|https?)://", max_length=2048)
    analyse_fps: float = Field(default=2.0, gt=0, le=30)
    # One motion reading per this many seconds: the most motion seen in that time.
    reading_interval_s: float = Field(default=10.0, ge=0.1, le=3600)

    @property
    def address(self) -> str:
        return self.id

    @model_validator(mode="after")
    def _check(self) -> CameraDevice:
        self._require("camera", DeviceType.CAMERA)
        return self


def radio_address(port: str, address: int) -> str:
    return f"{port}/{address:08X}"


def _transport_of(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("transport", "zigbee2mqtt"))  # the original default
    return str(getattr(value, "transport", "zigbee2mqtt"))


# The config union: one member per device transport, tagged with its ``transport``
# (gateway/transports/ names the module that serves each).
_Devices: TypeAlias = (
    Annotated[Zigbee2MqttDevice, Tag("zigbee2mqtt")]
    | Annotated[BleDevice, Tag("ble")]
    | Annotated[BleLockDevice, Tag("ble_lock")]
    | Annotated[RadioDevice, Tag("radio")]
    | Annotated[GpsDevice, Tag("nmea")]
    | Annotated[CameraDevice, Tag("camera")]
    | Annotated[NativeDevice, Tag("native")]
)
TRANSPORTS: tuple[str, ...] = tuple(get_args(member)[1].tag for member in get_args(_Devices))

DeviceConfig = Annotated[
    _Devices,
    Discriminator(
        _transport_of,
        custom_error_type="transport",
        custom_error_message=f"transport must be {', '.join(TRANSPORTS[:-1])} or {TRANSPORTS[-1]}",
    ),
]


class GatewayConfig(_Strict):
    gateway: GatewaySection
    store: StoreSection = StoreSection()
    zigbee2mqtt: Zigbee2MqttSection = Zigbee2MqttSection()
    uplink: UplinkSection = UplinkSection()
    timeseries: TimeSeriesSection | None = None
    api: ApiSection | None = None
    ble: BleSection | None = None
    commands: CommandsSection = CommandsSection()
    native: NativeSection | None = None
    serial: list[SerialPort] = []
    homes: list[HomeSection] = []
    devices: list[DeviceConfig] = []

    @model_validator(mode="after")
    def _consistent(self) -> GatewayConfig:
        ids: set[str] = set()
        addresses: set[tuple[str, str]] = set()
        for device in self.devices:
            if device.id in ids:
                raise ValueError(f"two devices have the same id {device.id!r}")
            ids.add(device.id)
            key = (device.transport, device.address)
            if key in addresses:
                raise ValueError(f"two {device.transport} devices have the address {key[1]!r}")
            addresses.add(key)
        if len({h.id for h in self.homes}) != len(self.homes):
            raise ValueError("two [[homes]] have the same id")
        by_id = {d.id: d for d in self.devices}
        for home in self.homes:
            siren = by_id.get(home.pre_alarm_signal or "")
            if siren is not None and (
                siren.home != home.id
                or siren.type is not DeviceType.SIREN
                or siren.transport != "zigbee2mqtt"
            ):
                raise ValueError(
                    f"home {home.id}: pre_alarm_signal {siren.id!r} must be a Zigbee2MQTT "
                    "siren of this home"
                )
            button = by_id.get(home.away_button or "")
            if button is None:
                continue
            if button.home != home.id:
                raise ValueError(
                    f"home {home.id}: away_button {button.id!r} is another home's device"
                )
            # Its presses never raise an alarm: it must be nobody's alarm button.
            if button.resident is not None or button.transport in ("native", "nmea", "radio"):
                raise ValueError(
                    f"home {home.id}: away_button {button.id!r} is a resident's alarm device "
                    "(its press must stay an alarm): use a button of no resident, by the door"
                )
        ports = {p.name: p for p in self.serial}
        if len(ports) != len(self.serial):
            raise ValueError("two [[serial]] ports have the same name")
        if len({p.path for p in self.serial}) != len(self.serial):
            raise ValueError("two [[serial]] ports have the same path")
        for device in self.devices:
            if isinstance(device, RadioDevice | GpsDevice):
                port = ports.get(device.port)
                wanted = device.transport  # a port's protocol is its devices' transport
                if port is None:
                    raise ValueError(
                        f"device {device.id}: no [[serial]] port named {device.port!r}"
                    )
                if port.protocol != wanted:
                    speaks = f"port {port.name!r} speaks {port.protocol}, not {wanted}"
                    raise ValueError(f"device {device.id}: {speaks}")
        return self

    @property
    def ble_enabled(self) -> bool:
        return self.ble is not None or any(isinstance(d, BleDevice) for d in self.devices)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        parts: list[str] = []
        for index, part in enumerate(item["loc"]):
            # pydantic names the union member ("devices.0.radio.port"); people wrote no such key
            if index and isinstance(item["loc"][index - 1], int) and part in TRANSPORTS:
                continue
            parts.append(str(part))
        key = ".".join(parts) or "(top level)"
        lines.append(f"{key}: {item['msg']}")
    return "; ".join(lines)


describe_error = _describe  # the same words for a configuration from the dispatch service


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    return parse_toml(text, source, GatewayConfig, ConfigError, _describe)


def load_config(path: Path) -> GatewayConfig:
    return parse_config(read_text(path, ConfigError), str(path))
