"""Playing a scenario: every device on its transport, with its firmware's habits.

Devices announce themselves at the start, check in at their catalog interval (scaled by
the scenario's speed and skewed by their clock drift), drain their batteries, report a
low battery once, and may send duplicates or late packets; while their link is lost
what they send is lost. Zigbee2MQTT locks obey ``/set`` commands and BLE locks commands
written to their GATT (served over loopback TCP); either can jam or stay silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt

from devices import DeviceType
from devices.catalog import CATALOG
from devices.codecs.radio import Trigger

from .ble import BleAdvertiser, BleAir, GattLock, GattServer
from .broker import ANONYMOUS, BrokerLogin
from .camera import BedroomCamera, Scene
from .scenario import Scenario, SimDevice, parse_clock
from .serial import GpsWalk, PtyPort, RadioTransmitter
from .watch import GpsWatch, NativeUplink, sim_credential
from .zigbee import SimulatedZigbeeDevice, initial_state, lock_change, publish_bridge_devices

log = logging.getLogger("trygg.sim")

RADIO_PORT = "radio"
_TRIGGERS = {
    DeviceType.ALARM_BUTTON: Trigger.BUTTON,
    DeviceType.FALL_DETECTOR: Trigger.FALL,
    DeviceType.SMOKE: Trigger.SMOKE,
}
_LATE_S = (2.0, 8.0)  # simulated seconds a late packet is held back
_GPS_EVERY_S = 1.0  # a GPS receiver's output rate, simulated time
_WATCH_EVERY_S = 30.0  # how often a GPS watch on LTE reports its position, simulated time
_MIN_REAL_PERIOD_S = 0.1  # no device talks more often than this in real time


@dataclass(frozen=True)
class Wiring:
    """Where the simulated devices meet the gateway (the same on both sides)."""

    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    base_topic: str = "zigbee2mqtt"
    ble_host: str = "127.0.0.1"
    ble_port: int = 9750
    ble_gatt_port: int = 9751  # the BLE locks' GATT (TCP)
    serial_dir: Path = Path(tempfile.gettempdir()) / "trygg-sim"
    camera_host: str = "127.0.0.1"
    camera_port: int = 8554  # the first camera's; the next ones count up
    login: BrokerLogin = ANONYMOUS  # the simulated Zigbee2MQTT's, on that broker
    # The gateway's API, where GPS watches post (native device API, plain HTTP: loopback).
    native_host: str = "127.0.0.1"
    native_port: int = 8081

    @property
    def native_url(self) -> str:
        return f"http://{self.native_host}:{self.native_port}"

    def serial_path(self, name: str) -> Path:
        return self.serial_dir / name

    def camera_url(self, index: int) -> str:
        return f"http://{self.camera_host}:{self.camera_port + index}/stream.mjpg"


def gps_port(device: SimDevice) -> str:
    return f"gps-{device.id}"


def gateway_config(
    scenario: Scenario,
    wiring: Wiring,
    *,
    gateway_id: str = "gw-sim",
    store: Path = Path("trygg-gateway.db"),
    uplink_host: str | None = None,
    uplink_port: int | None = None,
    speed: float | None = None,
    gateway_login: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The gateway configuration that hears exactly this scenario's devices.

    ``gateway_login`` (username, password, ca_file) is how the gateway logs in to both
    brokers, when they are secured."""
    login = gateway_login or {}
    broker = {"host": wiring.broker_host, "port": wiring.broker_port, **login}
    config: dict[str, Any] = {
        "gateway": {"id": gateway_id},
        "store": {"path": str(store)},
        "zigbee2mqtt": {**broker, "base_topic": wiring.base_topic},
        "uplink": {
            "host": uplink_host or wiring.broker_host,
            "port": uplink_port or wiring.broker_port,
            **login,
        },
    }
    serial: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    if scenario.devices_on("ble", "ble_lock"):
        config["ble"] = {"backend": "sim", "sim_host": wiring.ble_host, "sim_port": wiring.ble_port}
    if scenario.devices_on("ble_lock"):
        config["ble"]["sim_gatt_port"] = wiring.ble_gatt_port
    if scenario.devices_on("radio"):
        path = str(wiring.serial_path(RADIO_PORT))
        serial.append({"name": RADIO_PORT, "path": path, "protocol": "radio"})
    cameras = 0
    for d in scenario.device:
        entry: dict[str, Any] = {"id": d.id, "type": d.type.value, "home": d.home}
        if d.resident:
            entry["resident"] = d.resident
        entry["transport"] = d.transport
        if d.transport == "zigbee2mqtt":
            entry["address"] = d.z2m_name
        elif d.transport == "ble_lock":
            entry["address"] = d.mac
        elif d.transport == "ble":
            entry["address"] = d.mac
            if d.bindkey:
                entry["bindkey"] = d.bindkey.lower()
        elif d.transport == "radio":
            entry["port"] = RADIO_PORT
            entry["radio_address"] = d.radio_id
        elif d.transport == "native":
            token = sim_credential(scenario.seed, d.id)
            entry["credential_sha256"] = hashlib.sha256(token.encode()).hexdigest()
            if d.safe_zone is not None:
                entry["safe_zone"] = d.safe_zone.model_dump()
        elif d.transport == "nmea":
            name = gps_port(d)
            serial.append({"name": name, "path": str(wiring.serial_path(name)), "protocol": "nmea"})
            entry["port"] = name
            if d.safe_zone is not None:
                entry["safe_zone"] = d.safe_zone.model_dump()
        else:
            entry["url"] = wiring.camera_url(cameras)
            entry["reading_interval_s"] = 1.0
            cameras += 1
        devices.append(entry)
    if serial:
        config["serial"] = serial
    if scenario.devices_on("native"):
        # The watches post to the gateway's API (over HTTP: the simulator is on loopback).
        config["api"] = {"host": wiring.native_host, "port": wiring.native_port}
        config["native"] = {"mqtt": False}
    rules = scenario.rules
    if rules.kinds():
        # The gateway runs on real time: the scenario's night is whenever it is played, and
        # its minutes pass ``speed`` times faster.
        return_s = round(rules.bed_exit_return_min * 60 / (speed or scenario.speed))
        inactive_s = round(rules.inactivity_min * 60 / (speed or scenario.speed))
        inactivity = {"inactivity_s": max(1, inactive_s)} if rules.inactivity_min else {}
        if rules.inactivity_min and rules.inactivity_pre_alarm_min:
            pre_s = round(rules.inactivity_pre_alarm_min * 60 / (speed or scenario.speed))
            inactivity["inactivity_pre_alarm_s"] = max(1, pre_s)
        if rules.wandering_min:
            wander_s = round(rules.wandering_min * 60 / (speed or scenario.speed))
            inactivity["wandering_s"] = max(1, wander_s)
        config["homes"] = [
            {
                "id": home,
                "night": "00:00-00:00",
                "bed_exit_return_s": max(1, return_s) if rules.bed_exit_return_min else 0,
                "door_open_at_night": rules.door_open_at_night,
                **inactivity,
            }
            for home in sorted({d.home for d in scenario.device})
        ]
    config["devices"] = devices
    return config


@dataclass
class Report:
    """What a run sent, and what its devices' firmware did."""

    scenario: str
    steps: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # by transport
    duplicates: int = 0
    late: int = 0
    lost: int = 0  # sent while the link was down
    elapsed_s: float = 0.0

    def summary(self) -> str:
        sent = ", ".join(f"{n} {t}" for t, n in sorted(self.sent.items())) or "nothing"
        return (
            f"{self.scenario}: {self.steps} steps in {self.elapsed_s:.1f} s; sent {sent}; "
            f"{self.duplicates} duplicates, {self.late} late, {self.lost} lost to a down link"
        )


class _Device:
    """One device's firmware: battery, link, clock, and what its radio sends."""

    def __init__(self, spec: SimDevice, rng: random.Random) -> None:
        self.spec = spec
        self.battery = float(spec.battery)
        self.linked = True
        self.low_reported = spec.battery < spec.low_battery_pct
        self.rng = rng
        self.jam_next = False
        self.zigbee: SimulatedZigbeeDevice | None = None
        self.ble: BleAdvertiser | None = None
        self.gatt: GattLock | None = None
        self.radio: RadioTransmitter | None = None
        self.gps: GpsWalk | None = None
        self.port: PtyPort | None = None
        self.camera: BedroomCamera | None = None
        self.camera_port = 0
        self.watch: GpsWatch | None = None


class ScenarioRun:
    """Plays one scenario: ``async with ScenarioRun(...) as run: await run.play()``.

    Entering plugs the serial ports and starts the cameras, so that a gateway started
    afterwards finds them; ``play`` connects to the broker and runs the timeline.
    """

    def __init__(
        self,
        scenario: Scenario,
        wiring: Wiring,
        *,
        speed: float | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.wiring = wiring
        self.speed = speed or scenario.speed
        self.on_step = on_step or (lambda line: log.info("%s", line))
        self.report = Report(scenario.name)
        self._devices = {
            d.id: _Device(d, random.Random(f"{scenario.seed}/{d.id}")) for d in scenario.device
        }
        self._radio_port: PtyPort | None = None
        self._air: BleAir | None = None
        self._gatt: GattServer | None = None
        self._client: aiomqtt.Client | None = None
        self._native: NativeUplink | None = None
        self._t0 = 0.0
        # Set once the Zigbee2MQTT locks are subscribed to their /set topics.
        self.commands_ready = asyncio.Event()
        self._late: set[asyncio.TimerHandle] = set()

    # -- set-up ----------------------------------------------------------------------
    async def __aenter__(self) -> ScenarioRun:
        cameras = 0
        for device in self._devices.values():
            spec = device.spec
            if spec.transport == "zigbee2mqtt":
                state: dict[str, Any] = {"battery": spec.battery, "linkquality": 120}
                state.update(initial_state(spec.type))
                state.update(spec.state)
                device.zigbee = SimulatedZigbeeDevice(
                    spec.z2m_name, spec.type, state, self.wiring.base_topic
                )
            elif spec.transport == "ble":
                key = bytes.fromhex(spec.bindkey) if spec.bindkey else None
                device.ble = BleAdvertiser(
                    spec.mac,
                    key,
                    battery_pct=spec.battery,
                    rssi_dbm=spec.rssi_dbm,
                    trigger_based=spec.type in (DeviceType.ALARM_BUTTON, DeviceType.FALL_DETECTOR),
                    state={k: bool(v) for k, v in spec.state.items()},
                )
            elif spec.transport == "ble_lock":
                device.gatt = GattLock(spec.mac, spec.battery, spec.lock_mode)
            elif spec.transport == "radio":
                device.radio = RadioTransmitter(spec.radio_id, spec.battery, spec.rssi_dbm)
                if self._radio_port is None:
                    self._radio_port = PtyPort(self.wiring.serial_path(RADIO_PORT))
                    self._radio_port.plug()
            elif spec.transport == "native":
                assert spec.latitude is not None and spec.longitude is not None
                device.gps = GpsWalk(
                    spec.latitude, spec.longitude, indoors=spec.indoors, rng=device.rng
                )
                credential = sim_credential(self.scenario.seed, spec.id)
                device.watch = GpsWatch(spec.id, credential, device.gps, battery_pct=spec.battery)
            elif spec.transport == "nmea":
                assert spec.latitude is not None and spec.longitude is not None
                device.gps = GpsWalk(
                    spec.latitude,
                    spec.longitude,
                    indoors=spec.indoors,
                    clock_drift_s=spec.clock_drift_ppm / 1e6 * 86_400,
                    rng=device.rng,
                )
                device.port = PtyPort(self.wiring.serial_path(gps_port(spec)))
                device.port.plug()
            else:
                device.camera = BedroomCamera(
                    scene=spec.scene, low_light=spec.low_light, seed=self.scenario.seed
                )
                device.camera_port = self.wiring.camera_port + cameras
                device.camera.start(self.wiring.camera_host, device.camera_port)
                cameras += 1
        if self.scenario.devices_on("ble"):
            self._air = BleAir(self.wiring.ble_host, self.wiring.ble_port)
        locks = [d.gatt for d in self._devices.values() if d.gatt is not None]
        if locks:
            self._gatt = GattServer(locks)
            await self._gatt.start(self.wiring.ble_host, self.wiring.ble_gatt_port)
        return self

    def zigbee_state(self, device_id: str) -> dict[str, Any]:
        """A simulated Zigbee2MQTT device's state as it last published it."""
        zigbee = self._devices[device_id].zigbee
        assert zigbee is not None, f"{device_id} is not a Zigbee2MQTT device"
        return dict(zigbee.state)

    async def act(self, device_id: str, do: str, **args: Any) -> None:
        """What a scenario step does, now: for a test or a person driving the homes by
        hand (the same actions and arguments as a step's, docs/simulator.md)."""
        await self._apply(self._devices[device_id], do, args)

    def gatt_lock(self, device_id: str) -> GattLock:
        """A simulated BLE lock, to look at what it was told and how it is."""
        gatt = self._devices[device_id].gatt
        assert gatt is not None, f"{device_id} is not a BLE lock"
        return gatt

    async def __aexit__(self, *exc: object) -> None:
        for handle in self._late:
            handle.cancel()
        for device in self._devices.values():
            if device.port is not None:
                device.port.unplug()
            if device.camera is not None:
                device.camera.stop()
        if self._radio_port is not None:
            self._radio_port.unplug()
        if self._air is not None:
            self._air.close()
        if self._gatt is not None:
            await self._gatt.close()

    # -- the clock -------------------------------------------------------------------
    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def sim_elapsed(self) -> timedelta:
        return timedelta(seconds=(self._loop_time() - self._t0) * self.speed)

    def real_s(self, sim: timedelta) -> float:
        return sim.total_seconds() / self.speed

    # -- playing ---------------------------------------------------------------------
    async def play(self) -> Report:
        self._t0 = self._loop_time()
        async with contextlib.AsyncExitStack() as stack:
            if self.scenario.devices_on("zigbee2mqtt"):
                self._client = await stack.enter_async_context(
                    aiomqtt.Client(
                        self.wiring.broker_host,
                        self.wiring.broker_port,
                        identifier=f"trygg-sim-{self.scenario.seed}-{random.getrandbits(32):x}",
                        **self.wiring.login.options(),
                    )
                )
                zigbee = [d.zigbee for d in self._devices.values() if d.zigbee is not None]
                await publish_bridge_devices(self._client, zigbee)
            if self.scenario.devices_on("native"):
                self._native = NativeUplink(self.wiring.native_url)
                stack.push_async_callback(self._native.aclose)
            async with asyncio.TaskGroup() as tasks:
                background = [tasks.create_task(self._commands())]
                for device in self._devices.values():
                    await self._announce(device)
                    background.append(tasks.create_task(self._firmware(device)))
                    if device.watch is not None:
                        background.append(tasks.create_task(self._watch(device)))
                    elif device.gps is not None:
                        background.append(tasks.create_task(self._gps(device)))
                await self._timeline()
                for task in background:
                    task.cancel()
        self.report.elapsed_s = self._loop_time() - self._t0
        return self.report

    async def _timeline(self) -> None:
        steps = sorted(self.scenario.step, key=lambda s: self.scenario.offset(s.at))
        for step in steps:
            await self._sleep_until(self.scenario.offset(step.at))
            device = self._devices[step.device]
            note = f" ({step.note})" if step.note else ""
            self.on_step(f"{step.at} {step.device}: {step.do}{_args(step.args)}{note}")
            await self._apply(device, step.do, step.args)
            self.report.steps += 1
        await self._sleep_until(self.scenario.duration)
        self.on_step(f"{self.scenario.end} end of {self.scenario.name}")

    async def _sleep_until(self, offset: timedelta) -> None:
        delay = self._t0 + self.real_s(offset) - self._loop_time()
        if delay > 0:
            await asyncio.sleep(delay)

    # -- firmware --------------------------------------------------------------------
    async def _announce(self, device: _Device) -> None:
        if device.zigbee is not None:
            await self._z2m(device, [device.zigbee.availability(True), device.zigbee.update()])
        elif device.ble is not None:
            self._ble(device, [device.ble.report()])
        elif device.radio is not None:
            self._radio(device, device.radio.check_in())
        elif device.watch is not None:  # switched on: it says so, and where it is if it knows
            await self._post(device, "heartbeat", device.watch.heartbeat())

    async def _firmware(self, device: _Device) -> None:
        """Check in at the catalog interval on the device's own (drifting) clock."""
        spec = device.spec
        if spec.transport in ("camera", "nmea", "ble_lock"):
            return  # they stream all the time, or are connected to
        interval = CATALOG[spec.type].checkin * (1 + spec.clock_drift_ppm / 1e6)
        # Real devices are not in step: the first check-in comes at a random phase.
        wait = interval * device.rng.uniform(0.2, 1.0)
        while True:
            await asyncio.sleep(max(_MIN_REAL_PERIOD_S, self.real_s(wait)))
            self._drain(device, wait)
            await self._check_in(device)
            wait = interval

    def _drain(self, device: _Device, elapsed: timedelta) -> None:
        device.battery = max(
            0.0, device.battery - device.spec.drain_pct_per_day * elapsed / timedelta(days=1)
        )

    async def _check_in(self, device: _Device) -> None:
        pct = round(device.battery)
        low = pct < device.spec.low_battery_pct
        report_low = low and not device.low_reported
        device.low_reported = device.low_reported or low
        if device.zigbee is not None:
            await self._z2m(device, [device.zigbee.update(battery=pct, battery_low=low)])
        elif device.ble is not None:
            device.ble.battery_pct = pct
            state = {"battery_low": low} if report_low or "battery_low" in device.ble.state else {}
            self._ble(device, [device.ble.report(**state)])
        elif device.radio is not None:
            device.radio.battery_pct = pct
            if report_low:
                self._radio(device, device.radio.low_battery())
            self._radio(device, device.radio.check_in())
        elif device.watch is not None:
            device.watch.battery_pct = pct
            if report_low:
                await self._post(device, "alarm", device.watch.alarm("battery_low"))
            await self._post(device, "heartbeat", device.watch.heartbeat())

    async def _gps(self, device: _Device) -> None:
        assert device.gps is not None and device.port is not None
        period_real = max(_MIN_REAL_PERIOD_S, _GPS_EVERY_S / self.speed)
        # The receiver's clock: the scenario's start on some day, then simulated time.
        started = datetime(2026, 1, 1, tzinfo=UTC) + parse_clock(self.scenario.start)
        last = self._loop_time()
        while True:
            await asyncio.sleep(period_real)
            now = self._loop_time()
            device.gps.advance((now - last) * self.speed)
            last = now
            data = device.gps.sentences(started + self.sim_elapsed())
            if device.port.write(data):
                self.report.sent["nmea"] += 1

    async def _watch(self, device: _Device) -> None:
        """A GPS watch reports where it is every _WATCH_EVERY_S (simulated), with a fix."""
        assert device.watch is not None and device.gps is not None
        period_real = max(_MIN_REAL_PERIOD_S, _WATCH_EVERY_S / self.speed)
        started = datetime.now(UTC)
        last = self._loop_time()
        while True:
            await asyncio.sleep(period_real)
            now = self._loop_time()
            device.gps.advance((now - last) * self.speed)
            last = now
            position = device.watch.locate(started + timedelta(seconds=now - self._t0))
            if position is not None:
                await self._post(device, "position", position)

    async def _post(self, device: _Device, kind: str, body: dict[str, Any]) -> None:
        """A watch's message over the native API (an alarm: until it is answered)."""
        if not device.linked:
            self.report.lost += 1
            return
        assert self._native is not None and device.watch is not None
        if await self._native.send(device.watch, kind, body) == 202:
            self.report.sent["native"] += 1

    # -- the air -----------------------------------------------------------------------
    async def _z2m(self, device: _Device, messages: list[tuple[str, bytes]]) -> None:
        if not device.linked:
            self.report.lost += len(messages)
            return
        assert self._client is not None
        for topic, payload in messages:
            copies = 2 if device.rng.random() < device.spec.duplicate else 1
            for _ in range(copies):
                await self._client.publish(topic, payload, qos=1)
                self.report.sent["zigbee2mqtt"] += 1
            self.report.duplicates += copies - 1

    def _ble(self, device: _Device, datagrams: list[bytes]) -> None:
        if not device.linked:
            self.report.lost += len(datagrams)
            return
        air = self._air
        assert air is not None

        def send(datagram: bytes) -> None:
            air.send(datagram)
            self.report.sent["ble"] += 1

        self._deliver(device, datagrams, send)

    def _radio(self, device: _Device, frames: bytes) -> None:
        port = self._radio_port
        assert port is not None
        if not device.linked:
            self.report.lost += 1
            return

        def send(data: bytes) -> None:
            if port.write(data):
                self.report.sent["radio"] += 1

        self._deliver(device, [frames], send)

    def _deliver(
        self, device: _Device, packets: list[bytes], send: Callable[[bytes], None]
    ) -> None:
        for packet in packets:
            copies = 2 if device.rng.random() < device.spec.duplicate else 1
            self.report.duplicates += copies - 1
            for _ in range(copies):
                if device.rng.random() < device.spec.late:
                    self.report.late += 1
                    delay = self.real_s(timedelta(seconds=device.rng.uniform(*_LATE_S)))
                    loop = asyncio.get_running_loop()
                    handle = loop.call_later(delay, send, packet)
                    self._late.add(handle)
                else:
                    send(packet)

    # -- steps -------------------------------------------------------------------------
    async def _apply(self, device: _Device, do: str, args: dict[str, Any]) -> None:
        if do == "link_lost":
            await self._link(device, up=False)
        elif do == "link_back":
            await self._link(device, up=True)
        elif do == "battery":
            device.battery = float(args.get("pct", device.battery))
            if device.gatt is not None:
                device.gatt.change(
                    device.gatt.status.state, device.gatt.status.cause, round(device.battery)
                )
            await self._check_in(device)
        elif device.zigbee is not None:
            await self._apply_zigbee(device, device.zigbee, do, args)
        elif device.ble is not None:
            if do == "press":
                self._ble(device, device.ble.press(str(args.get("action", "press"))))
            else:
                self._ble(device, [device.ble.report(**{k: bool(v) for k, v in args.items()})])
        elif device.radio is not None:
            trigger = Trigger[str(args.get("trigger", _TRIGGERS[device.spec.type].name)).upper()]
            if do == "press":
                self._radio(device, device.radio.press(trigger))
            elif do == "restore":
                self._radio(device, device.radio.restore(trigger))
            else:
                self._radio(device, device.radio.tamper(bool(args.get("active", True))))
        elif device.watch is not None and do in ("press", "fall"):
            alarm = "sos" if do == "press" else "fall"
            await self._post(device, "alarm", device.watch.alarm(alarm))
        elif device.gps is not None:
            self._apply_gps(device, device.gps, do, args)
        elif device.camera is not None:
            if do == "scene":
                device.camera.set_scene(Scene(str(args["scene"])))
            else:
                device.camera.low_light = bool(args.get("on", True))

    async def _apply_zigbee(
        self, device: _Device, zigbee: SimulatedZigbeeDevice, do: str, args: dict[str, Any]
    ) -> None:
        if do == "set":
            await self._z2m(device, [zigbee.update(**args)])
        elif do == "press":
            await self._z2m(device, zigbee.press(str(args.get("action", "single"))))
        elif do == "jam":
            device.jam_next = True
        elif do == "command":
            # What the staff's phone sends through the gateway to Zigbee2MQTT.
            assert self._client is not None
            await self._client.publish(f"{zigbee.topic}/set", json.dumps(args), qos=1)

    def _apply_gps(self, device: _Device, gps: GpsWalk, do: str, args: dict[str, Any]) -> None:
        if do == "walk":
            gps.indoors = False
            gps.speed_kmh = float(args.get("speed_kmh", 4.0))
            gps.bearing_deg = float(args.get("bearing_deg", gps.bearing_deg))
        elif do == "stop":
            gps.speed_kmh = 0.0
        elif do in ("indoors", "outdoors"):
            gps.indoors = do == "indoors"
        elif device.port is None:
            return  # a watch has no serial port to unplug
        elif do == "unplug":
            device.port.unplug()
        else:
            device.port.plug()

    async def _link(self, device: _Device, *, up: bool) -> None:
        if device.gatt is not None:
            device.gatt.linked = up
            if not up:
                device.gatt.drop_links()
            return
        if device.camera is not None:
            if up:
                device.camera.start(self.wiring.camera_host, device.camera_port)
            else:
                device.camera.stop()
            return
        if device.zigbee is not None:
            # Zigbee2MQTT, not the device, says it went away (after its availability timeout).
            device.linked = True
            await self._z2m(device, [device.zigbee.availability(up)])
        device.linked = up
        if up:
            await self._announce(device)

    async def _commands(self) -> None:
        """Zigbee2MQTT locks obey ``<name>/set``: lock, unlock, and sometimes jam."""
        client = self._client
        locks = {
            d.zigbee.topic: d
            for d in self._devices.values()
            if d.zigbee is not None and d.spec.type is DeviceType.DIGITAL_LOCK
        }
        if client is None or not locks:
            self.commands_ready.set()
            return
        for topic in locks:
            await client.subscribe(f"{topic}/set", qos=1)
        self.commands_ready.set()
        async for message in client.messages:
            device = locks.get(str(message.topic).removesuffix("/set"))
            if device is None or not isinstance(message.payload, bytes):
                continue
            try:
                command = json.loads(message.payload)
                wanted = str(command["state"]).upper()
            except (ValueError, KeyError, TypeError):
                log.warning("lock %s: ignoring command %r", device.spec.id, message.payload[:80])
                continue
            await self._operate(device, wanted)

    async def _operate(self, device: _Device, wanted: str) -> None:
        zigbee = device.zigbee
        assert zigbee is not None
        mode = device.spec.lock_mode
        if mode == "silent":
            return
        device.battery = max(0.0, device.battery - 0.05)  # the motor is what drains a lock
        common = {"action_source_name": "rf", "battery": round(device.battery)}
        jams = mode == "jams"
        if not jams and wanted != "UNLOCK" and device.jam_next:
            device.jam_next = False
            jams = True
        change = lock_change(wanted, jams=jams)
        await self._z2m(device, [zigbee.update(**change, **common), zigbee.update(action="")])


def _args(args: dict[str, Any]) -> str:
    return (" " + " ".join(f"{k}={v}" for k, v in args.items())) if args else ""


def to_toml(config: dict[str, Any], header: str = "") -> str:
    """A gateway configuration as TOML a person can read: one [table] or [[table]] per
    section, nested values inline."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for name, value in config.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            lines.append("")
            lines.append(f"[[{name}]]" if isinstance(value, list) else f"[{name}]")
            lines.extend(f"{key} = {_toml_value(v)}" for key, v in item.items())
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
