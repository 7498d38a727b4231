"""The gateway process: an explicit ordered list of start steps, undone in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram

from devices import EVENT_KINDS, utc_now
from devices.wire import MAX_HEALTH_LINKS, GatewayHealth, LinkState, OutboxLevel

from .actions import DeviceActor, TestActor, Unreachable
from .commands import CommandHandler
from .config import DeviceConfig, GatewayConfig
from .counters import InputCounters
from .devicestate import DeviceStateReport
from .inventory import InventoryReport
from .pipeline import Pipeline
from .readings import ReadingsBuffer
from .registry import DEVICE_CONFIG, RegisteredDevice, Registry, RegistryError
from .remoteconfig import Configurator
from .rules import HomeRules
from .store import Store, StoreDamage, StoreError, StoreFault
from .supervision import Supervisor
from .tasks import TaskSupervisor
from .transports import DeviceLink, Link, in_use, plugin
from .uplink import DispatchUplink

log = logging.getLogger("trygg.gateway")
RULES_TICK_S = 0.5  # how late a home rule's timer may fire
STORE_WATCH_S = 1.0  # how soon a store file deleted or replaced under the process is noticed

STOP_TASK_S = 5.0
try:
    VERSION = importlib.metadata.version("trygg")
except importlib.metadata.PackageNotFoundError:  # run from a source tree not installed
    VERSION = "unknown"
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


if TYPE_CHECKING:
    from .timeseries import TimeSeriesUplink


class Gateway:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        gw = config.gateway.id
        self.counters = InputCounters()
        self.registry = Registry(config.devices)
        self.metrics_registry = CollectorRegistry(auto_describe=True)
        self.ack_latency = Histogram(
            "trygg_gateway_ack_latency_seconds",
            "From publishing an event to the dispatch service's ack",
            buckets=ACK_BUCKETS,
            registry=self.metrics_registry,
        )
        self.store = Store(
            config.store.path,
            budget_bytes=int(config.store.budget_mb * 2**20),
            reserve_bytes=int(config.store.reserve_mb * 2**20),
        )
        self.store.on_recovered = self._store_recovered
        self.store.on_damaged = self._store_damaged
        self.readings = ReadingsBuffer(self.store)
        self.inventory = InventoryReport(gw, self.registry, self.store)
        self.commands = CommandHandler(
            gw, config.commands, self.registry, self.store, self.counters, self._actor
        )
        self.device_states = DeviceStateReport(
            gw,
            self.registry,
            batch_s=config.gateway.device_changes_s,
            summary_s=config.gateway.device_summary_s,
            discovered=self.store.discovered,
            described=lambda transport, address: self.pipeline.described(transport, address),
        )
        self.started = time.monotonic()
        self.uplink = DispatchUplink(
            config.uplink,
            gw,
            self.store,
            heartbeat_interval_s=config.gateway.heartbeat_interval_s,
            ack_latency=self.ack_latency,
            inventory=self.inventory,
            commands=self.commands,
            device_states=self.device_states,
            health=self.health,
        )
        self.inventory.on_change = self.uplink.wake
        # The time-series client and the local API are loaded only when configured:
        # they weigh tens of MB that a small gateway need not carry.
        self.timeseries: TimeSeriesUplink | None = None
        if config.timeseries is not None:
            from .timeseries import TimeSeriesUplink

            self.timeseries = TimeSeriesUplink(
                config.timeseries, gw, self.store, home_of=self._home_of
            )
        self.pipeline = Pipeline(
            gw,
            self.registry,
            self.store,
            self.counters,
            # Without a time-series server readings are not kept: they would only fill the disk.
            readings=self.readings if self.timeseries else None,
            on_event=lambda _event: self.uplink.wake(),
            rules=HomeRules(config.homes),
        )
        self.pipeline.signal_pre_alarm = self._signal_pre_alarm
        # A signed "test" raises the device's alarm through the pipeline, marked a test.
        self.commands.tester = TestActor(self.pipeline)
        # A signed "configure" sets the devices, homes and heartbeat the centre keeps.
        self.configurator = Configurator(
            config, self.registry, self.store, self.pipeline.rules, self._set_heartbeat
        )
        self.commands.configurator = self.configurator
        # The transports' shared links (a broker, each serial port, the BLE scanner), in
        # the registry's order; a transport's module loads only when it is used.
        self.transport_links: dict[str, list[Link]] = {
            p.name: list(p.links(config, self.pipeline)) for p in in_use(config)
        }
        self.links: list[Link] = [link for ls in self.transport_links.values() for link in ls]
        self.supervisor = Supervisor(self.registry, self.pipeline)
        # Links of a device's own (a camera's stream, a lock's GATT link), by device id.
        self.device_links: dict[str, DeviceLink] = {}
        self.api_port: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._device_tasks: dict[str, asyncio.Task[None]] = {}
        self._stops: list[Callable[[], Awaitable[None]]] = []
        self._reports: set[asyncio.Task[None]] = set()
        self.tasks = TaskSupervisor()

    def _set_heartbeat(self, interval_s: float) -> None:
        """A configuration was applied: its heartbeat interval, and a heartbeat now that
        tells the dispatch service the version in force."""
        self.uplink.heartbeat_interval_s = interval_s
        self.uplink.beat_now()

    def _home_of(self, device_id: str) -> str | None:
        device = self.registry.get(device_id)
        return device.config.home if device is not None else None

    async def health(self) -> GatewayHealth:
        """The gateway's health as its heartbeat carries it to the dispatch service."""
        now = utc_now()
        outbox: dict[str, OutboxLevel] = {}
        used_pct: float | None = None
        store = self.store
        with contextlib.suppress(StoreError):  # a faulted store says so below
            for priority, (count, age) in (await store.outbox_ages(now)).items():
                outbox[priority.value] = OutboxLevel(events=count, oldest_age_s=age)
            if store.budget_bytes:
                used_pct = round(100 * await store.used_bytes() / store.budget_bytes, 1)
        links = {
            "/".join(h.key)[:64]: LinkState(state=h.state[:32] or "unknown", up=h.up)
            for h in (link.health() for link in self.links[:MAX_HEALTH_LINKS])
        }
        timeseries = self.timeseries
        return GatewayHealth(
            version=VERSION,
            uptime_s=int(time.monotonic() - self.started),
            outbox=outbox,
            links=links,
            timeseries_uplink=None
            if timeseries is None
            else "connected"
            if timeseries.connected
            else "disconnected",
            readings_buffered=self.readings.waiting,
            disk_budget_used_pct=used_pct,
            store_fault=store.fault.reason[:200] if store.fault else None,
            devices=len(self.registry),
            devices_silent=sum(1 for d in self.registry if d.status.silent),
            config_version=self.configurator.version,
        )

    async def _signal_pre_alarm(self, home_id: str, on: bool) -> None:
        """The home's siren on (for the pre-alarm's time) or off, through Zigbee2MQTT:
        ``{"warning": ...}`` on ``<base>/<name>/set``, as Zigbee2MQTT's sirens take it."""
        home = self.pipeline.rules.homes.get(home_id)
        siren = self.registry.get(home.pre_alarm_signal) if home and home.pre_alarm_signal else None
        if home is None or siren is None or siren.config.transport != "zigbee2mqtt":
            return
        transport = self.link("zigbee2mqtt")
        client = getattr(transport, "client", None)
        if client is None:
            log.warning("pre-alarm of %s: the Zigbee2MQTT broker is not connected", home_id)
            return
        warning: dict[str, object] = {"mode": "stop"}
        if on:
            duration = home.inactivity_pre_alarm_s
            warning = {"mode": "emergency", "level": "low", "strobe": True, "duration": duration}
        base = self.config.zigbee2mqtt.base_topic.rstrip("/")
        topic = f"{base}/{siren.config.address}/set"
        await client.publish(topic, json.dumps({"warning": warning}), qos=1)
        log.info("pre-alarm of %s: siren %s %s", home_id, siren.id, "on" if on else "off")

    def link(self, name: str) -> Link:
        """A running shared link by its task's name ("zigbee2mqtt", "serial-gps1", "ble")."""
        (found,) = (link for link in self.links if link.name == name)
        return found

    def _actor(self, device: RegisteredDevice) -> DeviceActor | None:
        """What carries out a command on this device: its transport's actor, given the
        running link (the device's own, or its transport's shared one)."""
        p = plugin(device.config.transport)
        if p.actor is None:
            return None
        link: object | None
        if p.device_link is not None:
            link = self.device_links.get(device.id)
        else:
            link = next(iter(self.transport_links.get(p.name, ())), None)
        return Unreachable() if link is None else p.actor(link)

    def _store_recovered(self, fault: StoreFault) -> None:
        """Tell the dispatch service that events could not be stored for a while."""
        detail: dict[str, object] = {
            "reason": fault.reason,
            "since": fault.since.isoformat(),
            "until": fault.until.isoformat() if fault.until else None,
            "failed_writes": fault.failures,
        }
        self._report("store_fault", detail)

    def _store_damaged(self, damage: StoreDamage) -> None:
        """Tell the dispatch service that the store was replaced, and what was saved."""
        detail: dict[str, object] = {
            "reason": damage.reason,
            "kept_as": str(damage.moved_to) if damage.moved_to else None,
            **damage.salvage.detail(),
        }
        self._report("store_damaged", detail)

    def _report(self, kind: str, detail: dict[str, object]) -> None:
        task = asyncio.create_task(
            self.pipeline.raise_gateway_event(EVENT_KINDS[kind], detail), name=f"{kind}-report"
        )
        self._reports.add(task)
        task.add_done_callback(self._report_done)

    def _report_done(self, task: asyncio.Task[None]) -> None:
        self._reports.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The store failed again: that fault is reported when it recovers in turn.
            log.error("could not report %s: %s", task.get_name(), task.exception())

    async def _watch_store(self) -> None:
        every = self.config.store.integrity_check_s
        checked = time.monotonic()
        while True:
            await asyncio.sleep(STORE_WATCH_S)
            due = time.monotonic() - checked >= every
            await self.store.check(integrity=due)
            if due:
                checked = time.monotonic()

    async def _rules(self) -> None:
        while True:
            await asyncio.sleep(RULES_TICK_S)
            await self.pipeline.tick_rules()

    def _spawn(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        self._tasks.append(self.tasks.spawn(name, work))

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        # Storage first: nothing may be accepted before it can be kept. Then the uplinks,
        # so what is already stored starts moving; the devices come last.
        await self.store.open()
        self._stops.append(self.store.close)
        await self.store.audit("gateway_started", self.config.gateway.id)
        await self.pipeline.load()
        await self.configurator.load()  # before local pairings: it has replaced some
        await self._load_paired()
        await self.inventory.load()
        self._spawn("dispatch-uplink", self.uplink.run)
        if self.timeseries is not None:
            self._spawn("timeseries-uplink", self.timeseries.run)
        self._spawn("readings", self.readings.run)
        self._stops.append(self.readings.flush)  # what is buffered in memory is kept
        if self.config.api is not None:
            await self._start_api(self.config.api.host, self.config.api.port)
        for link in self.links:
            self._spawn(link.name, link.run)
        for device in self.registry:
            self._device_changed(device, True)
        self.registry.subscribe(self._device_changed)
        # Commands are checked once the devices' links exist (the uplink queues them).
        self._spawn("commands", self.commands.run)
        self._spawn("supervision", self.supervisor.run)
        self._spawn("store-watch", self._watch_store)
        self._spawn("input-summary", self.counters.run)
        # The timed rules (bed exit) are per home; the centre may configure homes later.
        self._spawn("home rules", self._rules)
        log.info(
            "gateway %s started: %d devices, store %s",
            self.config.gateway.id,
            len(self.registry),
            self.config.store.path,
        )

    async def _load_paired(self) -> None:
        for device_id, body in await self.store.paired_devices():
            try:
                self.registry.add(DEVICE_CONFIG.validate_json(body), origin="paired")
            except (ValueError, RegistryError) as exc:
                # Kept in the store for a technician to see; not a reason to stay down.
                log.error("paired device %s not loaded: %s", device_id, exc)

    async def pair(self, config: DeviceConfig) -> RegisteredDevice:
        """Add a device through the technician API: registered, kept, and listened to."""
        refused = plugin(config.transport).pairing(self.config, config)
        if refused is not None:
            raise RegistryError(refused)
        device = self.registry.add(config)  # checks id and address; raises before storing
        try:
            await self.store.pair(config.id, config.model_dump_json())
        except BaseException:
            self.registry.remove(config.id)
            raise
        await self.store.forget_discovered(config.transport, config.address)
        log.info("paired %s (%s %s)", config.id, config.transport, config.address)
        return device

    async def unpair(self, device_id: str) -> None:
        device = self.registry.get(device_id)
        if device is not None and device.origin == "remote":
            # Kept by the dispatch service: removed here, it would come back with the next
            # configuration, or stay gone from this gateway while the centre shows it.
            raise RegistryError(f"{device_id!r} is set by the dispatch service; remove it there")
        self.registry.remove(device_id)  # KeyError / RegistryError for the caller
        await self.store.unpair(device_id)
        log.info("unpaired %s", device_id)

    def _device_changed(self, device: RegisteredDevice, added: bool) -> None:
        """Devices with a connection of their own (cameras, BLE locks) get a task."""
        if not added:
            task = self._device_tasks.pop(device.id, None)
            if task is not None:
                task.cancel()
            self.device_links.pop(device.id, None)
            return
        build = plugin(device.config.transport).device_link
        if build is None:
            return
        link = self.device_links[device.id] = build(self.config, device, self.pipeline)
        # One device's bug must not take the others down: supervised like the transports.
        self._device_tasks[device.id] = self.tasks.spawn(f"device-{device.id}", link.run)

    async def _start_api(self, host: str, port: int) -> None:
        import uvicorn

        from .api import create_api

        class _ApiServer(uvicorn.Server):
            """uvicorn without its own signal handling: the gateway decides when to stop."""

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        api = self.config.api
        cert = api.tls_cert_file if api else None
        key = api.tls_key_file if api else None
        server = _ApiServer(
            uvicorn.Config(
                create_api(self),
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                ssl_certfile=cert,
                ssl_keyfile=key,
            )
        )
        task = asyncio.create_task(server.serve(), name="api")
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"gateway API could not listen on {host}:{port}")
            await asyncio.sleep(0.02)
        self.api_port = server.servers[0].sockets[0].getsockname()[1]
        scheme = "https" if cert else "http"
        log.info("gateway API on %s://%s:%d/healthz and /metrics", scheme, host, self.api_port)

        async def stop_api() -> None:
            server.should_exit = True
            await task

        self._stops.append(stop_api)

    async def stop(self) -> None:
        for task in list(self._device_tasks.values()):
            await self._cancel(task)
        self._device_tasks.clear()
        for task in reversed(self._tasks):
            await self._cancel(task)
        self._tasks.clear()
        while self._stops:
            await self._stops.pop()()
        r = self.readings
        log.info(
            "gateway %s stopped: %sinputs accepted %s, dropped %s; readings taken %d,"
            " committed %d, dropped %s, left unwritten %d",
            self.config.gateway.id,
            "".join(f"{said}; " for link in self.links if (said := link.summary())),
            dict(self.counters.accepted),
            {str(k): v for k, v in self.counters.dropped.items()},
            r.added,
            r.committed,
            dict(r.dropped + self.store.readings_dropped),
            r.waiting,
        )

    @staticmethod
    async def _cancel(task: asyncio.Task[None]) -> None:
        """Stop a task, but never hang the stop on it: a client library that waits
        forever for a goodbye from its server must not keep the store from closing."""
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=STOP_TASK_S)
        if not done:
            log.warning("%s did not stop within %.0f s; going on", task.get_name(), STOP_TASK_S)
        elif not task.cancelled() and task.exception() is not None:
            log.error("%s had failed", task.get_name(), exc_info=task.exception())

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def run_forever(self) -> None:
        """Until cancelled. Every task is supervised and never ends by itself; a cancel
        reaches only this coroutine, so that ``stop()`` undoes the start in its order
        (the inputs stop before the readings buffer is written out, not all at once)."""
        async with self:
            await asyncio.Event().wait()
