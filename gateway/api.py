"""The gateway's local HTTP API: ``/healthz`` for supervisors, ``/metrics`` for
Prometheus, ``/devices`` for technicians pairing devices, and ``/lock-log`` for the
lock log with the check of its hash chain. It listens on loopback by
default and carries no names (residents are ids here).

The technician routes need ``Authorization: Bearer <[api] technician_token>``; without a
token configured they answer only on loopback."""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import ValidationError

from devices import utc_now
from devices.chain import Verdict

from .counters import DropReason
from .registry import DEVICE_CONFIG, RegistryError
from .store import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import Metric

    from .service import Gateway


class _Snapshot(Collector):
    """Exposes a snapshot taken by the request handler (the store is read asynchronously)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def snapshot(gateway: Gateway) -> dict[str, Any]:
    now = utc_now()
    store = gateway.store
    outbox = {}
    readings_stored = 0
    unreadable = None
    try:
        for priority, (count, age) in (await store.outbox_ages(now)).items():
            outbox[priority.value] = {"events": count, "oldest_age_s": round(age, 3)}
        readings_stored = await store.readings_count()
    except StoreError as exc:
        unreadable = str(exc)
    fault = store.fault
    return {
        "outbox": outbox,
        "store": {
            "fault": None
            if fault is None
            else {
                "reason": fault.reason,
                "since": fault.since.isoformat(),
                "failed_writes": fault.failures,
            },
            "unreadable": unreadable,
            "alarm_reserve_released": store.reserve_released,
            "readings_dropped": dict(store.readings_dropped),
        },
        "readings_buffered": readings_stored + gateway.readings.waiting,
        "dispatch_uplink": "connected" if gateway.uplink.connected.is_set() else "disconnected",
        "timeseries_uplink": (
            None
            if gateway.timeseries is None
            else "connected"
            if gateway.timeseries.connected
            else "disconnected"
        ),
        **_links(gateway),
        "devices": len(gateway.registry),
        "devices_silent": sum(1 for d in gateway.registry if d.status.silent),
        "store_quarantined": str(gateway.store.quarantined) if gateway.store.quarantined else None,
        "store_damage": [
            {
                "at": d.at.isoformat(),
                "reason": d.reason,
                "kept_as": str(d.moved_to) if d.moved_to else None,
                **d.salvage.detail(),
            }
            for d in gateway.store.damage[-10:]
        ],
        "tasks_restarted": {name: asdict(f) for name, f in gateway.tasks.failures().items()},
    }


def _links(gateway: Gateway) -> dict[str, Any]:
    """Each transport link's state, where its health says: ``{"zigbee2mqtt": "connected",
    "serial": {"gps1": "open"}, ...}``."""
    shown: dict[str, Any] = {}
    for health in (link.health() for link in gateway.links):
        *within, last = health.key
        place = shown
        for key in within:
            place = place.setdefault(key, {})
        place[last] = health.state
    return shown


def _technician(request: Request) -> None:
    settings = request.app.state.gateway.config.api
    token = settings.technician_token if settings else None
    if token is None:
        client = request.client.host if request.client else ""
        if not _is_loopback(client):
            raise HTTPException(403, "set [api] technician_token to manage devices remotely")
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise HTTPException(
            401, "a technician token is required", headers={"WWW-Authenticate": "Bearer"}
        )


Technician = Annotated[None, Depends(_technician)]


def create_api(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="Trygg gateway", docs_url=None, redoc_url=None)
    app.state.gateway = gateway
    registry = gateway.metrics_registry
    dynamic = _Snapshot()
    registry.register(dynamic)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        state = await snapshot(gateway)
        problems = _problems(gateway, state)
        state["status"] = "ok" if not problems else "degraded"
        state["problems"] = problems
        return JSONResponse(state, status_code=200 if not problems else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        state = await snapshot(gateway)
        depth = GaugeMetricFamily(
            "trygg_gateway_outbox_events",
            "Events waiting for the dispatch ack",
            labels=["priority"],
        )
        age = GaugeMetricFamily(
            "trygg_gateway_outbox_oldest_age_seconds",
            "Age of the oldest unacked event",
            labels=["priority"],
        )
        for priority, item in state["outbox"].items():
            depth.add_metric([priority], item["events"])
            age.add_metric([priority], item["oldest_age_s"])
        buffered = GaugeMetricFamily(
            "trygg_gateway_readings_buffered",
            "Readings not yet accepted by the time-series server",
            value=state["readings_buffered"],
        )
        up = GaugeMetricFamily(
            "trygg_gateway_uplink_connected", "1 when the uplink is connected", labels=["uplink"]
        )
        up.add_metric(["dispatch"], state["dispatch_uplink"] == "connected")
        if state["timeseries_uplink"] is not None:
            up.add_metric(["timeseries"], state["timeseries_uplink"] == "connected")
        for health in (link.health() for link in gateway.links):
            up.add_metric([health.metric], health.up)
        dropped = CounterMetricFamily(
            "trygg_gateway_input_dropped", "Inputs dropped, by reason", labels=["reason"]
        )
        for reason, n in gateway.counters.dropped.items():
            dropped.add_metric([reason.value], n)
        readings_dropped = CounterMetricFamily(
            "trygg_gateway_readings_dropped", "Readings dropped, by reason", labels=["reason"]
        )
        for why, n in (gateway.store.readings_dropped + gateway.readings.dropped).items():
            readings_dropped.add_metric([why], n)
        accepted = CounterMetricFamily(
            "trygg_gateway_accepted", "Inputs accepted, by kind", labels=["kind"]
        )
        for kind, n in gateway.counters.accepted.items():
            accepted.add_metric([kind], n)
        restarts = CounterMetricFamily(
            "trygg_gateway_task_restarts",
            "Gateway tasks started again after a failure",
            labels=["task"],
        )
        for name, n in gateway.tasks.restarts.items():
            restarts.add_metric([name], n)
        commands = CounterMetricFamily(
            "trygg_gateway_command_results",
            "Results of signed commands from the dispatch service, by outcome",
            labels=["outcome"],
        )
        for outcome, n in gateway.commands.outcomes.items():
            commands.add_metric([outcome], n)
        devices = GaugeMetricFamily(
            "trygg_gateway_devices", "Registered devices by supervision state", labels=["state"]
        )
        counts = {"ok": 0, "silent": 0, "radio_lost": 0}
        for device in gateway.registry:
            s = device.status
            counts["radio_lost" if s.radio_lost else "silent" if s.silent else "ok"] += 1
        for label, n in counts.items():
            devices.add_metric([label], n)
        dynamic.families = [
            depth,
            age,
            buffered,
            up,
            dropped,
            readings_dropped,
            accepted,
            restarts,
            commands,
            devices,
        ]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/devices")
    async def list_devices(_: Technician) -> list[dict[str, Any]]:
        return [device.public() for device in gateway.registry]

    @app.get("/devices/discovered")
    async def discovered(_: Technician) -> list[dict[str, Any]]:
        return [asdict(d) for d in await gateway.store.discovered()]

    @app.get("/devices/{device_id}")
    async def get_device(device_id: str, _: Technician) -> dict[str, Any]:
        device = gateway.registry.get(device_id)
        if device is None:
            raise HTTPException(404, f"no device {device_id!r}")
        return device.public()

    @app.post("/devices", status_code=201)
    async def pair(body: Annotated[dict[str, Any], Body()], _: Technician) -> dict[str, Any]:
        try:
            config = DEVICE_CONFIG.validate_python(body)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc'][1:]) or 'device'}: {e['msg']}"
                for e in exc.errors()
            ]
            raise HTTPException(422, "; ".join(problems)) from None
        try:
            device = await gateway.pair(config)
        except RegistryError as exc:
            raise HTTPException(409, str(exc)) from None
        return device.public()

    @app.delete("/devices/{device_id}", status_code=204)
    async def unpair(device_id: str, _: Technician) -> Response:
        try:
            await gateway.unpair(device_id)
        except KeyError:
            raise HTTPException(404, f"no device {device_id!r}") from None
        except RegistryError as exc:
            raise HTTPException(409, str(exc)) from None
        return Response(status_code=204)

    @app.post("/dev/v1/{device_id}/{kind}", status_code=202)
    async def native_message(device_id: str, kind: str, request: Request) -> dict[str, Any]:
        """A native device's message (docs/native-api.md): 202 once it is kept."""
        return await _native(gateway, device_id, kind, request)

    @app.get("/lock-log")
    async def lock_log(
        _: Technician,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        device: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    ) -> dict[str, Any]:
        """The newest entries first (``before``: an entry's number, to page back), and
        the check of the whole chain."""
        try:
            entries = await gateway.store.lock_log(limit, before=before, device_id=device)
            verdict = await gateway.store.verify_lock_log()
        except StoreError as exc:
            raise HTTPException(503, f"the store cannot be read: {exc}") from None
        return {"entries": [asdict(e) for e in entries], "verification": verification(verdict)}

    return app


_NATIVE_REFUSED = "unknown device or wrong credential"


async def _native(gateway: Gateway, device_id: str, kind: str, request: Request) -> dict[str, Any]:
    from devices.codecs.native import KINDS, MAX_MESSAGE_BYTES

    from .transports.native import TRANSPORT, NativeInput, authentic

    counters = gateway.counters
    source = f"https:{device_id[:128]}/{kind[:16]}"
    client = request.client.host if request.client else ""
    if request.url.scheme != "https" and not _is_loopback(client):
        # A credential must not cross a network in the clear.
        counters.drop(DropReason.UNAUTHENTICATED, source, f"plain HTTP from {client[:64]}")
        raise HTTPException(403, "native devices post over HTTPS (set [api] tls_cert_file)")
    if kind not in KINDS:
        counters.drop(DropReason.UNKNOWN_TOPIC, source)
        raise HTTPException(404, f"no message kind {kind[:40]!r}: one of {', '.join(KINDS)}")
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    device = gateway.registry.get(device_id)
    why = (
        "no bearer credential"
        if scheme.lower() != "bearer"
        else "no such device"
        if device is None
        else f"a {device.config.transport} device, not a native one"
        if device.config.transport != TRANSPORT
        else "wrong credential"
        if not authentic(device, credential.strip())
        else None
    )
    if why is not None or device is None:
        # The log says why; the answer does not tell which device ids exist.
        counters.drop(DropReason.UNAUTHENTICATED, source, str(why))
        raise HTTPException(401, _NATIVE_REFUSED, headers={"WWW-Authenticate": "Bearer"})
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MESSAGE_BYTES:
            counters.drop(DropReason.OVERSIZED, source, f"over {MAX_MESSAGE_BYTES} bytes")
            raise HTTPException(413, f"a message is at most {MAX_MESSAGE_BYTES} bytes")
    native = getattr(request.app.state, "native", None)
    if native is None:  # one for the API: it knows which messages are being stored now
        native = request.app.state.native = NativeInput(gateway.pipeline)
    try:
        refused = await native.take(device, kind, bytes(body), source, resent=False)
    except StoreError as exc:
        raise HTTPException(
            503, f"not kept ({exc}): send it again", headers={"Retry-After": "1"}
        ) from None
    if refused is not None:
        raise HTTPException(refused.status, refused.detail)
    return {"accepted": kind}


def verification(verdict: Verdict) -> dict[str, Any]:
    kind = verdict.problem.value if verdict.problem is not None else None
    return {
        "valid": verdict.valid,
        "entries": verdict.entries,
        "first_broken": verdict.first_broken,
        "kind": kind,
        "problem": None if kind is None else f"{kind}: {verdict.detail}",
    }


def _problems(gateway: Gateway, state: dict[str, Any]) -> list[str]:
    """What makes the gateway degraded: an uplink or a transport it was told to use down."""
    problems = []
    store = state["store"]
    if store["fault"] is not None:
        fault = store["fault"]
        problems.append(
            f"events cannot be stored since {fault['since']}: {fault['reason']}"
            f" ({fault['failed_writes']} writes failed)"
        )
    if store["unreadable"] is not None:
        problems.append(f"store unreadable: {store['unreadable']}")
    if store["alarm_reserve_released"]:
        problems.append("disk full: the alarm reserve is in use and readings are dropped")
    for name, failure in state["tasks_restarted"].items():
        if failure["down"]:
            problems.append(f"{name} failed ({failure['error']}); starting it again")
    if state["dispatch_uplink"] != "connected":
        problems.append("dispatch uplink disconnected")
    problems += [h.problem for h in (link.health() for link in gateway.links) if not h.up]
    return problems


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
