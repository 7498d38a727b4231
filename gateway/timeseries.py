"""The time-series uplink: buffered readings to the InfluxDB v2 write API.

A batch is deleted locally only after the server accepted it (HTTP 204). While the
server is away, readings stay in the store (within its disk budget) and drain in
batches when it returns. It runs beside the dispatch uplink and never holds an alarm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from devices.wire import POSITION_MEASUREMENT, POSITION_METRICS

from .backoff import Backoff
from .config import TimeSeriesSection
from .store import Store, StoredReading

log = logging.getLogger("trygg.gateway.timeseries")

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


def line_protocol(
    gateway_id: str,
    readings: list[StoredReading],
    home_of: Callable[[str], str | None] = lambda _device: None,
) -> str:
    """InfluxDB line protocol: measurement ``trygg``, tagged with the gateway, the device
    and its home (a home's id, never a name: dashboards/grafana's "home" board). A
    position is measurement ``trygg_position`` with its UTC ``day`` as a tag as well, so
    the centre can delete it by the day past its retention (devices/wire.py)."""
    gw = gateway_id.translate(_TAG_ESCAPES)
    lines = []
    for r in readings:
        home = home_of(r.device_id)
        at_home = f",home={home.translate(_TAG_ESCAPES)}" if home else ""
        tags = f"gateway={gw},device={r.device_id.translate(_TAG_ESCAPES)}{at_home}"
        if r.metric in POSITION_METRICS:
            day = datetime.fromtimestamp(r.at_ms / 1000, UTC).date().isoformat()
            where = f"{POSITION_MEASUREMENT},{tags},day={day}"
            lines.append(f"{where} {r.metric}={r.value!r} {r.at_ms}")
            continue
        lines.append(f"trygg,{tags} {r.metric.translate(_TAG_ESCAPES)}={r.value!r} {r.at_ms}")
    return "\n".join(lines)


class TimeSeriesUplink:
    def __init__(
        self,
        settings: TimeSeriesSection,
        gateway_id: str,
        store: Store,
        home_of: Callable[[str], str | None] = lambda _device: None,
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.store = store
        self.home_of = home_of
        self.sent = 0
        self.failures = 0
        self.connected = False

    async def run(self) -> None:
        s = self.settings
        backoff = Backoff(first_s=0.5, cap_s=10.0)
        async with InfluxDBClientAsync(
            url=s.url, token=s.token, org=s.org, timeout=int(s.timeout_s * 1000), enable_gzip=False
        ) as client:
            write_api = client.write_api()
            batch: list[StoredReading] = []
            body = ""
            while True:
                if not batch:  # a batch that failed is sent again as it was
                    batch = await self.store.readings(s.batch_size)
                    if not batch:
                        await asyncio.sleep(s.poll_s)
                        continue
                    body = line_protocol(self.gateway_id, batch, self.home_of)
                try:
                    await write_api.write(
                        bucket=s.bucket,
                        record=body,
                        # The library's precision constants are plain strings.
                        write_precision=WritePrecision.MS,  # type: ignore[arg-type]
                    )
                except (ApiException, aiohttp.ClientError, TimeoutError, OSError) as exc:
                    self.connected = False
                    self.failures += 1
                    delay = backoff.next_delay()
                    log.warning(
                        "time-series server %s: %s; keeping %d+ readings, retrying in %.1f s",
                        s.url,
                        str(exc).splitlines()[0][:200],
                        len(batch),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    continue
                if not self.connected:
                    log.info("time-series server %s accepting writes", s.url)
                self.connected = True
                backoff.reset()
                await self.store.delete_readings(batch[0].seq, batch[-1].seq)
                self.sent += len(batch)
                batch = []
