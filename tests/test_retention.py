"""Positions are kept only as long as the organisation says: the retention job removes
them from events and alarms past it, keeps the alarms and their history, walks the events
in bounded batches, and refuses a setting outside 30-720 days (cloud/retention.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cloud.admin import admin_session, ensure_gateway
from cloud.db import Alarm, EventRecord, Organisation
from cloud.retention import PositionRetention
from devices import Priority
from devices.wire import events_topic
from gateway.store import StoredReading
from gateway.timeseries import line_protocol
from trygg.cli import app

from .conftest import (
    GATEWAY_ID,
    RunningCloud,
    envelope,
    inventory_device,
    publish,
    publish_inventory,
)
from .servers import Mosquitto, VictoriaMetrics, free_port, wait_until
from .test_gateway_supervision import Clock

pytestmark = pytest.mark.integration


async def _positions(cloud: RunningCloud) -> tuple[list[dict[str, Any]], list[Alarm]]:
    async with admin_session(cloud.settings) as session:
        events = list(await session.scalars(select(EventRecord.detail)))
        alarms = list(await session.scalars(select(Alarm)))
    return events, alarms


async def test_positions_past_the_retention_are_removed_and_the_alarms_kept(
    cloud: RunningCloud, mosquitto: Mosquitto
) -> None:
    await publish_inventory(cloud, [inventory_device("gps-1", type="gps_pendant")])
    for n in range(3):
        where = {"latitude": 55.6 + n / 100, "longitude": 13.0, "accuracy_m": 6.0}
        event = envelope(
            "retention",
            n,
            Priority.HIGH,
            kind="geofence_exit",
            device="gps-1",
            device_type="gps_pendant",
            detail={**where, "zones": ["home"]},
        )
        await publish(mosquitto.port, events_topic(GATEWAY_ID), event.model_dump_json())

    async def three() -> bool:
        return len((await _positions(cloud))[0]) == 3

    await wait_until(three, 20)
    async with admin_session(cloud.settings) as session:
        org = await session.get(Organisation, "org-a")
        assert org is not None and org.position_retention_days == 90
        org.position_retention_days = 30
        await session.commit()
    clock = Clock()
    job = PositionRetention(cloud.app.state.services.sessions, clock, batch=2)
    clock.advance(29 * 86400)
    assert await job.sweep() == 0  # inside the 30 days: kept
    events, (alarm,) = await _positions(cloud)
    assert all("latitude" in d for d in events) and alarm.latitude is not None
    clock.advance(2 * 86400)
    # Two at a time (the batch): the first sweep takes two, the next the third.
    assert await job.sweep() == 2
    assert await job.sweep() == 1
    assert await job.sweep() == 0
    events, (alarm,) = await _positions(cloud)
    for detail in events:
        assert detail["position_removed"] is True and detail["zones"] == ["home"]
        assert not {"latitude", "longitude", "accuracy_m"} & detail.keys()
    assert (alarm.latitude, alarm.longitude) == (None, None)
    assert (alarm.kind, alarm.event_count) == ("geofence_exit", 3)  # the record stays
    async with await cloud.authed("anna") as http:
        shown = (await http.get(f"/api/v1/alarms/{alarm.id}")).json()
    assert shown["positions"] == [] and shown["alarm"]["latitude"] is None


def test_the_retention_is_set_per_organisation_within_30_to_720_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRYGG_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    runner = CliRunner()
    made = runner.invoke(app, ["cloud", "add-gateway", "malmo", "gw-1", "--name", "Rosengård"])
    assert made.exit_code == 0, made.output
    for days, says in (("29", "greater than or equal to 30"), ("721", "less than or equal to 720")):
        refused = runner.invoke(
            app, ["cloud", "set-organisation", "malmo", "--position-retention-days", days]
        )
        said = " ".join(refused.output.replace("│", " ").split())
        assert refused.exit_code == 2 and says in said, refused.output
    done = runner.invoke(
        app, ["cloud", "set-organisation", "malmo", "--position-retention-days", "365"]
    )
    assert done.exit_code == 0, done.output
    assert "position_retention_days=365" in done.output


WATCH = {
    "id": "watch-1",
    "transport": "native",
    "type": "gps_pendant",
    "home": "home-12",
    "resident": "res-12",
    "credential_sha256": "a" * 64,
    "tracking": True,
}


async def test_tracking_needs_the_residents_consent_and_its_withdrawal_turns_it_off(
    sqlite_cloud: RunningCloud,
) -> None:
    url = f"/api/v1/gateways/{GATEWAY_ID}/configuration"
    change = {"base_version": None, "devices": [WATCH], "homes": []}
    async with await sqlite_cloud.authed("tove") as tech:
        refused = await tech.put(url, json=change)
        assert refused.status_code == 422
        assert "tracking needs its resident's consent" in refused.json()["detail"]
    async with await sqlite_cloud.authed("stina") as supervisor:
        given = await supervisor.post(
            "/api/v1/residents/res-12/consents",
            json={"service": "position", "given_by": "resident"},
        )
        assert given.status_code == 201, given.text
        consent = given.json()["id"]
    async with await sqlite_cloud.authed("tove") as tech:
        kept = await tech.put(url, json=change)
        assert kept.status_code == 200, kept.text
        assert (await tech.get(url)).json()["devices"][0]["tracking"] is True
    async with await sqlite_cloud.authed("stina") as supervisor:
        gone = await supervisor.post(f"/api/v1/residents/res-12/consents/{consent}/withdraw")
        assert gone.status_code == 200, gone.text
    async with await sqlite_cloud.authed("tove") as tech:
        view = (await tech.get(url)).json()
    assert view["version"] == 2 and view["devices"][0]["tracking"] is False
    assert view["created_by"] == "stina"


async def _series(victoria: VictoriaMetrics, match: str) -> list[dict[str, str]]:
    async with httpx.AsyncClient(timeout=10) as http:
        res = await http.get(
            f"{victoria.url}/api/v1/series", params={"match[]": match, "start": "1"}
        )
    assert res.status_code == 200, res.text
    series: list[dict[str, str]] = res.json()["data"]
    return series


async def _positions_stored(victoria: VictoriaMetrics) -> set[tuple[str, str, str]]:
    """The store's position series as (gateway, device, day)."""
    found = await _series(victoria, '{__name__=~"trygg_position_.+"}')
    return {(m["gateway"], m["device"], m["day"]) for m in found}


async def test_positions_past_the_retention_are_deleted_in_the_time_series_store_by_day(
    sqlite_cloud: RunningCloud, victoria: VictoriaMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    """Each organisation's gateways lose the days past its own retention; a gateway no
    organisation knows loses those past the longest; other readings stay; a store that
    refuses is an error, said once, and the next sweep catches up."""
    caplog.set_level(logging.INFO, "trygg.cloud.retention")
    services = sqlite_cloud.app.state.services
    async with admin_session(sqlite_cloud.settings) as session:
        await ensure_gateway(session, "org-b", "gw-b", "Gateway B")
        org_b = await session.get(Organisation, "org-b")
        assert org_b is not None
        org_b.position_retention_days = 30  # org-a keeps the default 90 days
        await session.commit()
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    ages = (100, 40, 5)  # days

    def day(age: int) -> str:
        return (now - timedelta(days=age)).date().isoformat()

    taken = [int((now - timedelta(days=age)).timestamp() * 1000) for age in ages]
    async with httpx.AsyncClient(timeout=10) as http:
        for gateway in (GATEWAY_ID, "gw-b", "gw-gone"):
            readings = [
                StoredReading(i, "gps-1", metric, 55.6, at_ms)
                for i, at_ms in enumerate(taken)
                for metric in ("latitude", "longitude")
            ]
            readings.append(StoredReading(9, "gps-1", "battery_pct", 80.0, taken[0]))
            body = line_protocol(gateway, readings)
            res = await http.post(f"{victoria.url}/api/v2/write?precision=ms", content=body)
            assert res.status_code == 204, res.text
        await http.get(f"{victoria.url}/internal/force_flush")
    everything = {(g, "gps-1", day(a)) for g in (GATEWAY_ID, "gw-b", "gw-gone") for a in ages}

    async def written() -> bool:
        return await _positions_stored(victoria) == everything

    await wait_until(written, 20, interval_s=0.2)

    clock = Clock()
    clock.now = now
    job = PositionRetention(services.sessions, clock=clock, timeseries_url=victoria.url)
    await job.sweep()
    kept = everything - {
        (GATEWAY_ID, "gps-1", day(100)),  # org-a: past 90 days
        ("gw-b", "gps-1", day(100)),  # org-b: past 30 days
        ("gw-b", "gps-1", day(40)),
        ("gw-gone", "gps-1", day(100)),  # nobody's: past the longest, 90
    }
    assert await _positions_stored(victoria) == kept
    assert job.store_ok is True
    assert f"deleted org-b's positions in the time-series store up to {day(40)}" in caplog.text
    assert len(await _series(victoria, "trygg_battery_pct")) == 3  # only positions are deleted

    # A store that does not answer: an error, once, and the sweep's work in the database
    # is done all the same; the next sweep with the store back deletes what is due.
    job.timeseries_url = f"http://127.0.0.1:{free_port()}"
    clock.advance(10 * 86400)
    await job.sweep()
    await job.sweep()
    assert job.store_ok is False
    assert caplog.text.count("did not delete positions") == 1
    async with sqlite_cloud.client() as http:
        metrics = (await http.get("/metrics")).text
    assert "trygg_dispatch_timeseries_retention_ok -1.0" in metrics  # the service's own
    job.timeseries_url = victoria.url
    clock.advance(41 * 86400)  # the 40 days old are 91 now: past org-a's 90 as well
    await job.sweep()
    assert job.store_ok is True
    assert "deletes positions again" in caplog.text
    assert await _positions_stored(victoria) == {  # 56 days old: past org-b's 30 only
        (GATEWAY_ID, "gps-1", day(5)),
        ("gw-gone", "gps-1", day(5)),
    }


async def test_the_retention_sweep_turns_tracking_off_where_consent_is_gone(
    sqlite_cloud: RunningCloud,
) -> None:
    """A withdrawal whose delivery failed (a technician's change crossed it) is caught up
    by the next sweep: no device stays tracked without its resident's consent."""
    from sqlalchemy import update

    from cloud.db import Consent

    url = f"/api/v1/gateways/{GATEWAY_ID}/configuration"
    async with await sqlite_cloud.authed("stina") as supervisor:
        given = await supervisor.post(
            "/api/v1/residents/res-12/consents",
            json={"service": "position", "given_by": "resident"},
        )
        assert given.status_code == 201
    async with await sqlite_cloud.authed("tove") as tech:
        change = {"base_version": None, "devices": [WATCH], "homes": []}
        assert (await tech.put(url, json=change)).status_code == 200
    async with admin_session(sqlite_cloud.settings) as session:  # withdrawn, not delivered
        await session.execute(update(Consent).values(withdrawn_at=Consent.recorded_at))
        await session.commit()
    services = sqlite_cloud.app.state.services
    job = PositionRetention(services.sessions, configuration=services.configuration)
    await job.sweep()
    async with await sqlite_cloud.authed("tove") as tech:
        view = (await tech.get(url)).json()
    assert view["version"] == 2 and view["devices"][0]["tracking"] is False
    assert view["created_by"] == "system"
    await job.sweep()  # nothing more to do: no new version
    async with await sqlite_cloud.authed("tove") as tech:
        assert (await tech.get(url)).json()["version"] == 2


async def test_gateway_ids_of_the_services_own_intake_are_reserved(
    sqlite_cloud: RunningCloud,
) -> None:
    async with await sqlite_cloud.authed("adam") as admin:
        res = await admin.post("/api/v1/gateways", json={"id": "direct-org-b", "name": "x"})
    assert res.status_code == 422 and "reserved" in res.text
