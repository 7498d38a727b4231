"""Load mode: many simulated homes on Zigbee2MQTT, at a set reading and alarm rate.

Every home has the same device mix (by default a pendant, a door contact, a motion
sensor, a bed sensor, a smoke detector and a water sensor). Each device reports its state
every ``report_every_s`` on average; alarms (pendant presses, smoke, water) arrive as a
Poisson process at ``alarms_per_home_per_hour``. The messages, their order and their
values follow from the seed; how fast they leave depends on the machine. Messages carry
Zigbee2MQTT's ``last_seen`` timestamp (its ``advanced.last_seen`` option), so no two
are identical.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt

from devices import DeviceType
from devices.codecs import encode_state

from .broker import ANONYMOUS, BrokerLogin
from .zigbee import initial_state

DEFAULT_MIX = (
    DeviceType.ALARM_BUTTON,
    DeviceType.DOOR_CONTACT,
    DeviceType.MOTION,
    DeviceType.BED_SENSOR,
    DeviceType.SMOKE,
    DeviceType.WATER_LEAK,
)
_ALARMS = (  # what an alarm in a home is, and how often of all alarms
    (DeviceType.ALARM_BUTTON, 0.8),
    (DeviceType.SMOKE, 0.1),
    (DeviceType.WATER_LEAK, 0.1),
)
_TICK_S = 0.05


@dataclass(frozen=True)
class LoadPlan:
    homes: int
    report_every_s: float = 60.0
    alarms_per_home_per_hour: float = 0.1
    mix: tuple[DeviceType, ...] = DEFAULT_MIX
    seed: int = 0
    base_topic: str = "zigbee2mqtt"
    connections: int = 4
    qos: int = 1

    def __post_init__(self) -> None:
        if self.homes < 1:
            raise ValueError("homes must be at least 1")
        if self.report_every_s <= 0:
            raise ValueError("report_every_s must be positive")
        if self.alarms_per_home_per_hour < 0:
            raise ValueError("alarms_per_home_per_hour cannot be negative")
        if not self.mix:
            raise ValueError("a home needs at least one device")
        if not 1 <= self.connections <= 64:
            raise ValueError("connections must be 1..64")

    @property
    def devices(self) -> int:
        return self.homes * len(self.mix)

    @property
    def target_messages_per_s(self) -> float:
        return self.devices / self.report_every_s

    @property
    def target_alarms_per_s(self) -> float:
        return self.homes * self.alarms_per_home_per_hour / 3600

    def address(self, home: int, kind: DeviceType) -> str:
        return f"load-{home}/{kind.value}"

    def gateway_devices(self) -> list[dict[str, Any]]:
        """The [[devices]] a gateway needs to accept this load, not shelve it as discovered."""
        return [
            {
                "id": f"load-{home}-{kind.value}",
                "type": kind.value,
                "address": self.address(home, kind),
                "home": f"load-{home}",
            }
            for home in range(1, self.homes + 1)
            for kind in self.mix
        ]


@dataclass
class LoadReport:
    plan: LoadPlan
    elapsed_s: float = 0.0
    messages: int = 0
    readings_messages: int = 0
    alarms: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "homes": self.plan.homes,
            "devices": self.plan.devices,
            "seed": self.plan.seed,
            "elapsed_s": round(self.elapsed_s, 2),
            "messages": self.messages,
            "readings_messages": self.readings_messages,
            "alarms": dict(self.alarms),
            "messages_per_s": round(self.messages_per_s, 1),
            "target_messages_per_s": round(
                self.plan.target_messages_per_s + 2 * self.plan.target_alarms_per_s, 1
            ),
            "reconnects": self.reconnects,
        }

    def summary(self) -> str:
        alarms = sum(self.alarms.values())
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.alarms.items())) or "none"
        return (
            f"{self.plan.homes} homes ({self.plan.devices} devices), seed {self.plan.seed}: "
            f"{self.messages:,} messages in {self.elapsed_s:.1f} s = {self.messages_per_s:,.0f}/s "
            f"(target {self.plan.target_messages_per_s:,.0f}/s); {alarms} alarms ({kinds})"
        )


class _Shard:
    """The homes one MQTT connection speaks for, and their devices' states."""

    def __init__(self, plan: LoadPlan, homes: list[int], seed: str) -> None:
        self.plan = plan
        self.rng = random.Random(seed)
        self.homes = homes
        self.devices = [(home, kind) for home in homes for kind in plan.mix]
        self.state: dict[tuple[int, DeviceType], dict[str, Any]] = {
            key: self._initial(key[1]) for key in self.devices
        }
        self.cursor = self.rng.randrange(len(self.devices)) if self.devices else 0
        self.clearing: list[tuple[float, int, DeviceType, str]] = []
        self.last_seen: dict[tuple[int, DeviceType], datetime] = {}

    def _initial(self, kind: DeviceType) -> dict[str, Any]:
        state: dict[str, Any] = {
            "battery": self.rng.randint(40, 100),
            "linkquality": self.rng.randint(30, 200),
        }
        state.update(initial_state(kind))
        return state

    def message(self, home: int, kind: DeviceType, **changes: Any) -> tuple[str, bytes]:
        state = self.state[(home, kind)]
        state.update(changes)
        # Zigbee2MQTT stamps the time it heard the device; two messages of one device are
        # never heard in the same millisecond (a press and its reset would be identical).
        heard = datetime.now(UTC)
        now = heard.replace(microsecond=heard.microsecond // 1000 * 1000)
        last = self.last_seen.get((home, kind))
        if last is not None and now <= last:
            now = last + timedelta(milliseconds=1)
        self.last_seen[(home, kind)] = now
        state["last_seen"] = now.isoformat(timespec="milliseconds")
        return f"{self.plan.base_topic}/{self.plan.address(home, kind)}", encode_state(state)

    def next_report(self) -> tuple[str, bytes]:
        home, kind = self.devices[self.cursor]
        self.cursor = (self.cursor + 1) % len(self.devices)
        state = self.state[(home, kind)]
        changes: dict[str, Any] = {"linkquality": self.rng.randint(30, 200)}
        if kind is DeviceType.MOTION:
            changes["occupancy"] = self.rng.random() < 0.3
        elif kind is DeviceType.BED_SENSOR:
            changes["occupancy"] = self.rng.random() < 0.7
        elif kind is DeviceType.DOOR_CONTACT:
            changes["contact"] = self.rng.random() < 0.95
        if self.rng.random() < 0.01:
            changes["battery"] = max(0, int(state.get("battery", 100)) - 1)
        return self.message(home, kind, **changes)

    def alarm(self, now: float) -> tuple[str, list[tuple[str, bytes]]] | None:
        """A new alarm in a random home of this shard (None if the mix lacks its device)."""
        home = self.rng.choice(self.homes)
        roll, acc = self.rng.random(), 0.0
        kind = _ALARMS[-1][0]
        for candidate, share in _ALARMS:
            acc += share
            if roll <= acc:
                kind = candidate
                break
        if kind not in self.plan.mix:
            kind = DeviceType.ALARM_BUTTON
            if kind not in self.plan.mix:
                return None
        if kind is DeviceType.ALARM_BUTTON:
            press = self.message(home, kind, action="single")
            return kind.value, [press, self.message(home, kind, action="")]
        key = "smoke" if kind is DeviceType.SMOKE else "water_leak"
        self.clearing.append((now + 30.0, home, kind, key))
        return kind.value, [self.message(home, kind, **{key: True})]

    def cleared(self, now: float) -> list[tuple[str, bytes]]:
        due = [c for c in self.clearing if c[0] <= now]
        self.clearing = [c for c in self.clearing if c[0] > now]
        return [self.message(home, kind, **{key: False}) for _, home, kind, key in due]


async def run_load(
    plan: LoadPlan,
    host: str,
    port: int,
    duration_s: float,
    *,
    progress: Callable[[LoadReport], None] | None = None,
    progress_every_s: float = 5.0,
    login: BrokerLogin = ANONYMOUS,
) -> LoadReport:
    """Send the plan's load for ``duration_s`` seconds; the report says what was sent."""
    report = LoadReport(plan)
    shards_homes: list[list[int]] = [[] for _ in range(min(plan.connections, plan.homes))]
    for home in range(1, plan.homes + 1):
        shards_homes[(home - 1) % len(shards_homes)].append(home)
    shards = [_Shard(plan, homes, f"{plan.seed}/{i}") for i, homes in enumerate(shards_homes)]
    started = time.monotonic()
    deadline = started + duration_s

    async def send(client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        await client.publish(topic, payload, qos=plan.qos)
        report.messages += 1

    async def drive(index: int, shard: _Shard) -> None:
        share = len(shard.homes) / plan.homes
        report_rate = plan.target_messages_per_s * share
        alarm_rate = plan.target_alarms_per_s * share
        owed = shard.rng.random()  # start out of phase with the other connections
        next_alarm = started + shard.rng.expovariate(alarm_rate) if alarm_rate else float("inf")
        last = started
        while time.monotonic() < deadline:
            try:
                async with aiomqtt.Client(
                    host,
                    port,
                    identifier=f"trygg-load-{plan.seed}-{index}",
                    max_inflight_messages=256,
                    **login.options(),
                ) as client:
                    # A batch is published at once; that many calls pending is the plan.
                    client.pending_calls_threshold = 100_000
                    while (now := time.monotonic()) < deadline:
                        owed += (now - last) * report_rate
                        last = now
                        readings = [shard.next_report() for _ in range(int(owed))]
                        owed -= int(owed)
                        others: list[tuple[str, bytes]] = []
                        alarms: list[str] = []
                        while now >= next_alarm:
                            alarm = shard.alarm(now)
                            if alarm is not None:
                                alarms.append(alarm[0])
                                others.extend(alarm[1])
                            next_alarm += shard.rng.expovariate(alarm_rate)
                        others.extend(shard.cleared(now))
                        await asyncio.gather(*(send(client, t, p) for t, p in readings + others))
                        report.readings_messages += len(readings)
                        report.alarms.update(alarms)
                        await asyncio.sleep(_TICK_S)
            except aiomqtt.MqttError:
                report.reconnects += 1
                await asyncio.sleep(0.5)

    async def tell() -> None:
        while True:
            await asyncio.sleep(progress_every_s)
            report.elapsed_s = time.monotonic() - started
            if progress is not None:
                progress(report)

    teller = asyncio.create_task(tell())
    try:
        async with asyncio.TaskGroup() as tasks:
            for index, shard in enumerate(shards):
                tasks.create_task(drive(index, shard))
    finally:
        teller.cancel()
    report.elapsed_s = time.monotonic() - started
    return report
