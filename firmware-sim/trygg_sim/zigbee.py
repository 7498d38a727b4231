"""Simulated Zigbee2MQTT devices: they publish exactly what Zigbee2MQTT would."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from devices import DeviceType
from devices.codecs import encode_state

from .broker import ANONYMOUS, BrokerLogin

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
        DeviceType.FALL_DETECTOR: {"action": "", "fall": False},
        DeviceType.DOOR_CONTACT: {"contact": True},
        DeviceType.MOTION: {"occupancy": False},
        DeviceType.BED_SENSOR: {"occupancy": True},
        DeviceType.SMOKE: {"smoke": False, "battery_low": False},
        DeviceType.CO: {"carbon_monoxide": False},
        DeviceType.WATER_LEAK: {"water_leak": False},
        DeviceType.DIGITAL_LOCK: {"state": "LOCK", "lock_state": "locked", "action": ""},
    }
    return dict(initial.get(kind, {}))


def demo_home(home: str, base_topic: str = "zigbee2mqtt") -> dict[str, SimulatedZigbeeDevice]:
    """The devices of one simulated flat, keyed by role."""

    def make(name: str, kind: DeviceType, **state: Any) -> SimulatedZigbeeDevice:
        return SimulatedZigbeeDevice(f"{home}/{name}", kind, dict(state), base_topic)

    return {
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


class SimulatedHome:
    """A flat whose sensors report now and then and whose resident sometimes needs help."""

    def __init__(
        self,
        home: str,
        *,
        alarm_every_s: float = 45.0,
        report_every_s: float = 5.0,
        seed: int | None = None,
        base_topic: str = "zigbee2mqtt",
    ) -> None:
        self.home = home
        self.devices = demo_home(home, base_topic)
        self.alarm_every_s = alarm_every_s
        self.report_every_s = report_every_s
        self.rng = random.Random(seed)
        self.sent = 0

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


async def run_homes(
    host: str,
    port: int,
    homes: list[SimulatedHome],
    *,
    client_id: str = "trygg-sim",
    login: BrokerLogin = ANONYMOUS,
) -> None:
    """Play the homes against a broker until cancelled, reconnecting if it goes away."""
    while True:
        try:
            async with (
                aiomqtt.Client(host, port, identifier=client_id, **login.options()) as client,
                asyncio.TaskGroup() as tasks,
            ):
                for home in homes:
                    tasks.create_task(home.run(client))
        except* aiomqtt.MqttError as group:
            log.warning("simulator lost the broker: %s; retrying", group.exceptions[0])
            await asyncio.sleep(1.0)
