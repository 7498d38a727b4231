"""Positions are kept only as long as the organisation says: the retention job removes
them from events and alarms past it, keeps the alarms and their history, walks the events
in bounded batches, and refuses a setting outside 30-720 days (cloud/retention.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cloud.admin import admin_session
from cloud.db import Alarm, EventRecord, Organisation
from cloud.retention import PositionRetention
from devices import Priority
from devices.wire import events_topic
from trygg.cli import app

from .conftest import (
    GATEWAY_ID,
    RunningCloud,
    envelope,
    inventory_device,
    publish,
    publish_inventory,
)
from .servers import Mosquitto, wait_until
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


@pytest.mark.parametrize(
    ("value", "days"),
    [("90d", 90), ("1y", 365), ("3", 93), ("2w", 14), ("48h", 2), ("100y", 36500), ("x", None)],
)
def test_the_stores_retention_is_read_as_victoriametrics_writes_it(
    value: str, days: float | None
) -> None:
    from cloud.retention import retention_days

    assert retention_days(value) == days


async def test_a_time_series_store_that_keeps_longer_than_an_organisation_allows_is_an_error(
    sqlite_cloud: RunningCloud, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store deletes by its own -retentionPeriod; the job checks it is short enough."""
    from .servers import VictoriaMetrics

    sessions = sqlite_cloud.app.state.services.sessions
    stores = []
    for name, retention in (("long", "100y"), ("short", "60d")):
        (tmp_path / name).mkdir()
        store = VictoriaMetrics(tmp_path / name, (f"-retentionPeriod={retention}",))
        store.start()
        stores.append(store)
    try:
        long, short = stores
        job = PositionRetention(sessions, timeseries_url=long.url)
        await job.sweep()
        assert (job.store_days, job.needed_days, job.store_ok) == (36500, 90, False)
        assert "set its -retentionPeriod to 90d or less" in caplog.text
        job.timeseries_url = short.url
        await job.sweep()
        assert (job.store_days, job.store_ok) == (60, True)
        async with admin_session(sqlite_cloud.settings) as session:
            org = await session.get(Organisation, "org-a")
            assert org is not None
            org.position_retention_days = 30  # now the 60 days are too long
            await session.commit()
        await job.sweep()
        assert (job.needed_days, job.store_ok) == (30, False)
        job.timeseries_url = sqlite_cloud.url  # a server that does not say: not known
        await job.sweep()
        assert job.store_ok is None
        async with sqlite_cloud.client() as http:
            metrics = (await http.get("/metrics")).text
        assert "trygg_dispatch_timeseries_retention_ok 1.0" in metrics  # the service's own
    finally:
        for store in stores:
            store.stop()


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
