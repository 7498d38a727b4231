"""Simulated Zigbee2MQTT devices: they publish exactly what Zigbee2MQTT would, and a
home's lock obeys ``<friendly_name>/set`` as a Zigbee lock behind Zigbee2MQTT does."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from devices import DeviceType
from devices.codecs import encode_state

from .broker import ANONYMOUS, BrokerLogin
from .zigbee_models import bridge_devices

log = logging.getLogger("trygg.sim")


@dataclass
class SimulatedZigbeeDevice:
    """One device's Zigbee2MQTT state; every change publishes the whole state, as Z2M does."""

    friendly_name: str
    type: DeviceType
    state: dict[str, Any] = field(default_factory=dict)
    base_topic: str = "zigbee2mqtt"

    @property
    def topic(self) -> str:
        return f"{self.base_topic}/{self.friendly_name}"

    def update(self, **changes: Any) -> tuple[str, bytes]:
        self.state.update(changes)
        return self.topic, encode_state(self.state)

    def press(self, action: str = "single") -> list[tuple[str, bytes]]:
        """A press, then Zigbee2MQTT's reset of ``action`` to ``""``."""
        pressed = self.update(action=action)
        reset = self.update(action="")
        return [pressed, reset]

    def availability(self, online: bool) -> tuple[str, bytes]:
        return f"{self.topic}/availability", encode_state(
            {"state": "online" if online else "offline"}
        )


def initial_state(kind: DeviceType) -> dict[str, Any]:
    """What a device of this type reports before anything happens."""
    initial: dict[DeviceType, dict[str, Any]] = {
        DeviceType.ALARM_BUTTON: {"action": ""},
        DeviceType.FALL_DETECTOR: {"fall_down_status": "none", "presence": True},
        DeviceType.DOOR_CONTACT: {"contact": True},
        DeviceType.MOTION: {"occupancy": False},
        DeviceType.BED_SENSOR: {"occupancy": True},
        DeviceType.SMOKE: {"smoke": False, "battery_low": False},
        DeviceType.CO: {"carbon_monoxide": False},
        DeviceType.GAS: {"gas": False},
        DeviceType.HEAT: {"heat": False, "smoke": False},
        DeviceType.PRESENCE: {"presence": False},
        DeviceType.SIREN: {"max_duration": 60},
        DeviceType.WATER_LEAK: {"water_leak": False},
        DeviceType.DIGITAL_LOCK: {"state": "LOCK", "lock_state": "locked", "action": ""},
    }
    return dict(initial.get(kind, {}))


LOCK_COMMANDS = frozenset({"LOCK", "UNLOCK"})
# Zigbee2MQTT answers a /set within this; anything larger is not a lock command.
MAX_COMMAND_BYTES = 1024


def lock_change(wanted: str, *, jams: bool = False) -> dict[str, Any]:
    """What a Zigbee lock reports after ``{"state": wanted}`` (``LOCK`` or ``UNLOCK``): the
    bolt moved, or (``jams``) stopped half way."""
    action = "unlock" if wanted == "UNLOCK" else "lock"
    if jams:
        return {"state": "UNLOCK", "lock_state": "not_fully_locked", "action": action}
    if wanted == "UNLOCK":
        return {"state": "UNLOCK", "lock_state": "unlocked", "action": action}
    return {"state": "LOCK", "lock_state": "locked", "action": action}


def lock_command(payload: bytes) -> str | None:
    """``LOCK`` or ``UNLOCK`` from a ``/set`` payload (``{"state": "unlock"}``), or None
    for anything a lock would not act on."""
    if len(payload) > MAX_COMMAND_BYTES:
        return None
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    wanted = body.get("state") if isinstance(body, dict) else None
    if not isinstance(wanted, str) or wanted.upper() not in LOCK_COMMANDS:
        return None
    return wanted.upper()


def demo_home(
    home: str, base_topic: str = "zigbee2mqtt", *, lock: bool = False
) -> dict[str, SimulatedZigbeeDevice]:
    """The devices of one simulated flat, keyed by role; ``lock``: its front door has a
    digital lock (``<home>/front_door_lock``) besides the door contact."""

    def make(name: str, kind: DeviceType, **state: Any) -> SimulatedZigbeeDevice:
        return SimulatedZigbeeDevice(f"{home}/{name}", kind, dict(state), base_topic)

    devices = {
        "button": make("pendant", DeviceType.ALARM_BUTTON, battery=92, linkquality=120, action=""),
        "door": make(
            "front_door", DeviceType.DOOR_CONTACT, battery=88, contact=True, linkquality=96
        ),
        "motion": make(
            "hallway_motion", DeviceType.MOTION, battery=95, occupancy=False, illuminance=12
        ),
        "smoke": make(
            "kitchen_smoke", DeviceType.SMOKE, battery=100, battery_low=False, smoke=False
        ),
        "leak": make("bathroom_leak", DeviceType.WATER_LEAK, battery=97, water_leak=False),
    }
    if lock:
        kind = DeviceType.DIGITAL_LOCK
        devices["lock"] = make("front_door_lock", kind, battery=90, **initial_state(kind))
    return devices


class SimulatedHome:
    """A flat whose sensors report now and then and whose resident sometimes needs help.

    With ``lock``, its front door lock obeys ``/set`` (``obey``), and whoever it was opened
    for comes in: the door contact opens ``door_after_s`` later and closes again."""

    def __init__(
        self,
        home: str,
        *,
        alarm_every_s: float = 45.0,
        report_every_s: float = 5.0,
        seed: int | None = None,
        base_topic: str = "zigbee2mqtt",
        lock: bool = False,
        door_after_s: float = 2.0,
    ) -> None:
        self.home = home
        self.devices = demo_home(home, base_topic, lock=lock)
        self.alarm_every_s = alarm_every_s
        self.report_every_s = report_every_s
        self.door_after_s = door_after_s
        self.rng = random.Random(seed)
        self.sent = 0
        self.ignored = 0  # /set messages the lock did not act on (not a lock command)

    @property
    def lock(self) -> SimulatedZigbeeDevice | None:
        return self.devices.get("lock")

    @property
    def command_topics(self) -> list[str]:
        """The topics this home's devices take commands on."""
        return [] if self.lock is None else [f"{self.lock.topic}/set"]

    def obey(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """What the lock publishes when told ``payload`` on ``topic``: its new state, then
        the reset of ``action``. Nothing (counted in ``ignored``) for another topic or for
        what is not a lock command, as a real lock stays as it is."""
        lock = self.lock
        wanted = lock_command(payload) if lock is not None else None
        if lock is None or topic != f"{lock.topic}/set" or wanted is None:
            self.ignored += 1
            level = logging.WARNING if self.ignored == 1 else logging.DEBUG  # once is enough
            log.log(level, "%s: lock ignores %r on %s", self.home, payload[:80], topic[:200])
            return []
        log.info("%s: the front door lock is told %s", self.home, wanted)
        change = lock_change(wanted)
        return [lock.update(**change, action_source_name="rf"), lock.update(action="")]

    async def command(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        """Carry out a command: the lock answers at once; after an unlock, someone comes in."""
        answer = self.obey(topic, payload)
        await self._publish(client, answer)
        if answer and lock_command(payload) == "UNLOCK":
            await asyncio.sleep(self.door_after_s)
            door = self.devices["door"]
            await self._publish(client, [door.update(contact=False)])
            await asyncio.sleep(self.door_after_s)
            await self._publish(client, [door.update(contact=True)])

    async def _publish(self, client: aiomqtt.Client, messages: list[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)
            self.sent += 1

    async def run(self, client: aiomqtt.Client) -> None:
        for device in self.devices.values():
            await self._publish(client, [device.availability(True), device.update()])
        loop = asyncio.get_running_loop()
        next_alarm = loop.time() + self.rng.uniform(0.3, 1.0) * self.alarm_every_s
        while True:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.report_every_s)
            motion = self.devices["motion"]
            await self._publish(client, [motion.update(occupancy=self.rng.random() < 0.4)])
            if loop.time() >= next_alarm:
                await self._raise_alarm(client)
                next_alarm = loop.time() + self.rng.uniform(0.5, 1.5) * self.alarm_every_s

    async def _raise_alarm(self, client: aiomqtt.Client) -> None:
        roll = self.rng.random()
        if roll < 0.7:
            log.info("%s: resident presses the alarm button", self.home)
            await self._publish(client, self.devices["button"].press("single"))
        elif roll < 0.85:
            log.info("%s: smoke in the kitchen", self.home)
            smoke = self.devices["smoke"]
            await self._publish(client, [smoke.update(smoke=True)])
            await asyncio.sleep(10)
            await self._publish(client, [smoke.update(smoke=False)])
        else:
            log.info("%s: water on the bathroom floor", self.home)
            leak = self.devices["leak"]
            await self._publish(client, [leak.update(water_leak=True)])
            await asyncio.sleep(10)
            await self._publish(client, [leak.update(water_leak=False)])


async def publish_bridge_devices(
    client: aiomqtt.Client, devices: list[SimulatedZigbeeDevice]
) -> None:
    """The bridge's device list, retained, per bridge (base topic): what each device is."""
    bridges: dict[str, list[tuple[str, DeviceType]]] = {}
    for device in devices:
        bridges.setdefault(device.base_topic, []).append((device.friendly_name, device.type))
    for base, listed in bridges.items():
        await client.publish(f"{base}/bridge/devices", bridge_devices(listed), qos=1, retain=True)


async def _subscribe_commands(client: aiomqtt.Client, homes: list[SimulatedHome]) -> None:
    for home in homes:
        for topic in home.command_topics:
            await client.subscribe(topic, qos=1)


async def _take_commands(
    client: aiomqtt.Client, homes: list[SimulatedHome], tasks: asyncio.TaskGroup
) -> None:
    """Every home's commands on the one connection, each message to its home."""
    homes_of = {topic: home for home in homes for topic in home.command_topics}
    async for message in client.messages:
        home = homes_of.get(str(message.topic))
        if home is not None and isinstance(message.payload, bytes):
            # Its own task: a door being walked through does not hold up another home's lock.
            tasks.create_task(home.command(client, str(message.topic), message.payload))


async def run_homes(
    host: str,
    port: int,
    homes: list[SimulatedHome],
    *,
    client_id: str = "trygg-sim",
    login: BrokerLogin = ANONYMOUS,
    ready: asyncio.Event | None = None,
) -> None:
    """Play the homes against a broker until cancelled, reconnecting if it goes away.
    ``ready`` is set once connected with the locks listening for commands."""
    while True:
        try:
            async with (
                aiomqtt.Client(host, port, identifier=client_id, **login.options()) as client,
                asyncio.TaskGroup() as tasks,
            ):
                await publish_bridge_devices(client, [d for h in homes for d in h.devices.values()])
                for home in homes:
                    tasks.create_task(home.run(client))
                if any(home.command_topics for home in homes):
                    await _subscribe_commands(client, homes)
                    tasks.create_task(_take_commands(client, homes, tasks))
                if ready is not None:
                    ready.set()
        except* aiomqtt.MqttError as group:
            log.warning("simulator lost the broker: %s; retrying", group.exceptions[0])
            await asyncio.sleep(1.0)
