"""The gateway process: an explicit ordered list of start steps, undone in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram

from .config import GatewayConfig
from .counters import InputCounters
from .pipeline import Pipeline
from .readings import ReadingsBuffer
from .registry import Registry
from .store import Store
from .transports import Zigbee2MqttTransport
from .uplink import DispatchUplink

log = logging.getLogger("trygg.gateway")

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
            config.store.path, budget_bytes=int(config.store.budget_mb * 1024 * 1024)
        )
        self.readings = ReadingsBuffer(self.store)
        self.uplink = DispatchUplink(
            config.uplink,
            gw,
            self.store,
            heartbeat_interval_s=config.gateway.heartbeat_interval_s,
            ack_latency=self.ack_latency,
        )
        # The time-series client and the local API are loaded only when configured:
        # they weigh tens of MB that a small gateway need not carry.
        self.timeseries: TimeSeriesUplink | None = None
        if config.timeseries is not None:
            from .timeseries import TimeSeriesUplink

            self.timeseries = TimeSeriesUplink(config.timeseries, gw, self.store)
        self.pipeline = Pipeline(
            gw,
            self.registry,
            self.store,
            self.counters,
            base_topic=config.zigbee2mqtt.base_topic,
            max_payload_bytes=config.zigbee2mqtt.max_payload_bytes,
            # Without a time-series server readings are not kept: they would only fill the disk.
            readings=self.readings if self.timeseries else None,
            on_event=lambda _event: self.uplink.wake(),
        )
        self.zigbee2mqtt = Zigbee2MqttTransport(
            config.zigbee2mqtt, gw, self.pipeline.handle_zigbee2mqtt
        )
        self.api_port: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stops: list[Callable[[], Awaitable[None]]] = []

    def _spawn(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await work()

        self._tasks.append(asyncio.create_task(run(), name=name))

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
        self._spawn("dispatch-uplink", self.uplink.run)
        if self.timeseries is not None:
            self._spawn("timeseries-uplink", self.timeseries.run)
        self._spawn("readings", self.readings.run)
        self._stops.append(self.readings.flush)  # what is buffered in memory is kept
        if self.config.api is not None:
            await self._start_api(self.config.api.host, self.config.api.port)
        self._spawn("zigbee2mqtt", self.zigbee2mqtt.run)
        log.info(
            "gateway %s started: %d devices, store %s",
            self.config.gateway.id,
            len(self.config.devices),
            self.config.store.path,
        )

    async def _start_api(self, host: str, port: int) -> None:
        import uvicorn

        from .api import create_api

        class _ApiServer(uvicorn.Server):
            """uvicorn without its own signal handling: the gateway decides when to stop."""

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        server = _ApiServer(
            uvicorn.Config(
                create_api(self), host=host, port=port, log_level="warning", lifespan="off"
            )
        )
        task = asyncio.create_task(server.serve(), name="api")
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"gateway API could not listen on {host}:{port}")
            await asyncio.sleep(0.02)
        self.api_port = server.servers[0].sockets[0].getsockname()[1]
        log.info("gateway API on http://%s:%d/healthz and /metrics", host, self.api_port)

        async def stop_api() -> None:
            server.should_exit = True
            await task

        self._stops.append(stop_api)

    async def stop(self) -> None:
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        while self._stops:
            await self._stops.pop()()
        log.info("gateway %s stopped", self.config.gateway.id)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def run_forever(self) -> None:
        async with self:
            await asyncio.gather(*self._tasks)
