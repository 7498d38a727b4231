"""``GET /metrics``: the dispatch service in Prometheus' text format, for Grafana.

Counts only, never a name, address or position: events taken, inputs dropped by reason,
open alarms by priority, escalations, commands, the live streams' clients, gateways by
state. Counters are this process's since it started (each replica its own; Prometheus
sums them); the gauges that come from the database are the organisation-wide truth.

Who may read it: with ``TRYGG_METRICS_TOKEN`` set, whoever sends it as a bearer token;
without, only this host (loopback), as a scraper beside the service would.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Iterator

from fastapi import HTTPException, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from devices import Priority

from .db import Alarm, Gateway
from .lifecycle import OPEN_STATES
from .services import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def allowed(request: Request, token: str | None) -> None:
    """Refuse a scrape the settings do not allow (403 says why)."""
    if token is not None:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(403, "send TRYGG_METRICS_TOKEN as a bearer token")
        return
    host = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise HTTPException(403, "set TRYGG_METRICS_TOKEN to be scraped from another host")


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"trygg_dispatch_{name}", doc, value=value)


def _by(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    doc: str,
    label: str,
    values: dict[str, float],
) -> Metric:
    family = kind(f"trygg_dispatch_{name}", doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _alarms_raised(raised: dict[tuple[str, str], int]) -> Metric:
    family = CounterMetricFamily(
        "trygg_dispatch_alarms_raised",
        "Alarms opened, by kind and priority",
        labels=["kind", "priority"],
    )
    for (kind, priority), n in sorted(raised.items()):
        family.add_metric([kind, priority], float(n))
    return family


async def metrics(services: Services) -> Response:
    async with services.sessions() as session:
        open_rows = await session.execute(
            select(Alarm.priority, func.count())
            .where(Alarm.state.in_(OPEN_STATES))
            .group_by(Alarm.priority)
        )
        open_alarms = {p.value: 0.0 for p in Priority} | {p: float(n) for p, n in open_rows}
        gateway_rows = await session.execute(
            select(Gateway.online, func.count()).group_by(Gateway.online)
        )
        gateways = {"online": 0.0, "offline": 0.0, "never_seen": 0.0}
        for online, n in gateway_rows:
            key = "never_seen" if online is None else "online" if online else "offline"
            gateways[key] += n
        # What the online gateways' last heartbeats said of their outboxes, summed (a
        # gateway's own /metrics is on its home network, out of the centre's reach).
        waiting = {p.value: 0.0 for p in Priority}
        oldest = {p.value: 0.0 for p in Priority}
        for (health,) in await session.execute(
            select(Gateway.health).where(Gateway.online.is_(True), Gateway.health.is_not(None))
        ):
            for name, level in (health or {}).get("outbox", {}).items():
                if name in waiting and isinstance(level, dict):
                    waiting[name] += float(level.get("events", 0))
                    oldest[name] = max(oldest[name], float(level.get("oldest_age_s", 0)))
    ingest, commands = services.ingest, services.commands
    families: list[Metric] = [
        _counter("events_committed", "Events committed from gateways", ingest.committed),
        _counter("events_duplicate", "Events received again, kept once", ingest.duplicates),
        _counter("events_refused", "Events refused (kind or device unknown)", ingest.refused),
        _by(
            CounterMetricFamily,
            "input_dropped",
            "Gateway messages dropped, by reason",
            "reason",
            {k: float(v) for k, v in ingest.dropped.items()},
        ),
        _by(
            CounterMetricFamily,
            "input_neutralised",
            "Unstorable values replaced in kept input, by reason",
            "reason",
            {k: float(v) for k, v in ingest.neutralised.items()},
        ),
        _counter("inventories", "Gateway inventories applied", ingest.inventories),
        _counter("device_states", "Device states applied", ingest.device_states),
        GaugeMetricFamily(
            "trygg_dispatch_broker_connected",
            "1 while the dispatch service is subscribed on the broker",
            value=1.0 if ingest.connected.is_set() else 0.0,
        ),
        _by(GaugeMetricFamily, "alarms_open", "Open alarms, by priority", "priority", open_alarms),
        _counter("escalations", "Alarms escalated", services.escalator.escalated),
        _counter(
            "positions_removed",
            "Events whose position was removed past the organisation's retention",
            services.retention.removed,
        ),
        GaugeMetricFamily(
            "trygg_dispatch_timeseries_retention_ok",
            "1 when the last sweep deleted the positions past each organisation's retention "
            "in the time-series store; 0 when the store refused or was away; -1 before the "
            "first sweep or with no store",
            value={True: 1.0, False: 0.0, None: -1.0}[services.retention.store_ok],
        ),
        _by(
            CounterMetricFamily,
            "escalation_webhook",
            "Escalation webhook calls, by outcome",
            "outcome",
            {
                "sent": float(services.escalator.webhook_sent),
                "failed": float(services.escalator.webhook_failed),
            },
        ),
        _by(
            CounterMetricFamily,
            "commands",
            "Signed commands, by what became of them here",
            "outcome",
            {
                "published": float(commands.published),
                "not_sent": float(commands.not_sent),
                "result": float(commands.results),
                "expired": float(commands.expired),
            },
        ),
        _by(
            GaugeMetricFamily,
            "stream_clients",
            "Live streams open on this replica",
            "stream",
            {
                "alarms": float(services.hub.clients),
                "commands": float(services.command_hub.clients),
            },
        ),
        _by(GaugeMetricFamily, "gateways", "Registered gateways, by state", "state", gateways),
        _by(
            GaugeMetricFamily,
            "gateways_outbox_events",
            "Events waiting in the online gateways' outboxes (their last heartbeats), by priority",
            "priority",
            waiting,
        ),
        _by(
            GaugeMetricFamily,
            "gateways_outbox_oldest_age_seconds",
            "The oldest event waiting in any online gateway's outbox, by priority",
            "priority",
            oldest,
        ),
        _alarms_raised(ingest.alarms_raised),
        *ingest.event_delay.collect(),
        _counter("gateway_offline_raised", "gateway_offline raised", services.supervisor.raised),
        _counter("doors_relocked", "Doors locked after a visit", services.door_watch.relocks),
        _counter("doors_left_open", "door_left_open raised", services.door_watch.left_open),
        _by(
            CounterMetricFamily,
            "push",
            "Web Push messages to staff phones, by outcome",
            "outcome",
            {k: float(v) for k, v in services.push.counts.items()},
        ),
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE)
