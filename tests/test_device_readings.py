"""A device's readings for the technician's device page: written as gateways write them
(the InfluxDB line protocol) to a real VictoriaMetrics, read back through
GET /api/v1/devices/{id}/readings; one device's only, audited; a store missing, away or
answering nonsense is a reason, never a server error."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from cloud.admin import admin_session, ensure_user
from cloud.readings import MAX_POINTS, ReadingsUnavailable, device_readings, parse, query_for
from cloud.security import Role
from cloud.settings import CloudSettings
from gateway.store import StoredReading
from gateway.timeseries import line_protocol

from .conftest import GATEWAY_ID, RunningCloud, run_cloud
from .servers import Mosquitto, VictoriaMetrics, cloud_broker, free_port, wait_until

MINUTE_MS = 60_000


@contextlib.asynccontextmanager
async def _cloud(tmp: Path, broker: Mosquitto, **settings: object) -> AsyncIterator[RunningCloud]:
    config = CloudSettings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'cloud.db'}",
        **cloud_broker(broker.port),
        **settings,  # type: ignore[arg-type]
    )
    async with run_cloud(config) as running:
        async with await running.authed("tove") as tove:
            for device in ("smoke-1", "smoke-2"):
                body = {"id": device, "gateway_id": GATEWAY_ID, "home_id": "home-12"}
                res = await tove.post("/api/v1/devices", json=body | {"type": "smoke"})
                assert res.status_code == 201, res.text
        yield running


@pytest.fixture
async def stored_cloud(
    tmp_path: Path, mosquitto: Mosquitto, victoria: VictoriaMetrics
) -> AsyncIterator[RunningCloud]:
    async with _cloud(tmp_path, mosquitto, readings_query_url=victoria.url) as running:
        yield running


def _write(victoria: VictoriaMetrics, gateway_id: str, readings: list[StoredReading]) -> None:
    body = line_protocol(gateway_id, readings, lambda _device: "home-12")
    res = httpx.post(f"{victoria.url}/api/v2/write?precision=ms", content=body, timeout=10)
    assert res.status_code == 204, res.text
    httpx.get(f"{victoria.url}/internal/force_flush", timeout=10)


async def test_a_devices_readings_come_back_in_order_its_own_only_and_the_read_is_audited(
    stored_cloud: RunningCloud, victoria: VictoriaMetrics
) -> None:
    now_ms = int(time.time() * 1000)
    # smoke-1's battery over the last three hours, one reading every 30 minutes; its
    # signal; a neighbour's battery; and a device of the same name on another gateway.
    battery = [100.0, 96.0, 90.0, 71.0, 40.0, 12.0]
    mine = [
        StoredReading(i, "smoke-1", "battery_pct", v, now_ms - (5 - i) * 30 * MINUTE_MS)
        for i, v in enumerate(battery)
    ]
    mine.append(StoredReading(9, "smoke-1", "linkquality", 87.0, now_ms - MINUTE_MS))
    _write(victoria, GATEWAY_ID, mine)
    _write(victoria, GATEWAY_ID, [StoredReading(1, "smoke-2", "battery_pct", 55.0, now_ms)])
    # A position of the device (a tracked resident's): not the technician's to chart.
    _write(victoria, GATEWAY_ID, [StoredReading(10, "smoke-1", "latitude", 55.6, now_ms)])
    _write(victoria, "gw-elsewhere", [StoredReading(1, "smoke-1", "battery_pct", 1.0, now_ms)])
    async with await stored_cloud.authed("tove") as tove:
        answers: list[dict[str, object]] = []

        async def arrived() -> bool:
            res = await tove.get("/api/v1/devices/smoke-1/readings", params={"hours": 6})
            assert res.status_code == 200, res.text
            answers.append(res.json())
            series = {s["metric"]: s["points"] for s in answers[-1]["series"]}  # type: ignore[attr-defined]
            return len(series.get("battery_pct", [])) == len(battery) and "linkquality" in series

        await wait_until(arrived, 20, interval_s=0.2)
        body = answers[-1]
        assert (body["device_id"], body["gateway_id"], body["step_s"]) == (
            "smoke-1",
            GATEWAY_ID,
            60,
        )
        series = {s["metric"]: s["points"] for s in body["series"]}  # type: ignore[attr-defined]
        assert sorted(series) == ["battery_pct", "linkquality"]
        assert [v for _at, v in series["battery_pct"]] == battery  # not 55 (smoke-2), not 1
        times = [at for at, _v in series["battery_pct"]]
        assert times == sorted(times)
        for at, reading in zip(times, mine, strict=False):  # each in the step that ends at it
            assert 0 <= at * 1000 - reading.at_ms < 60_000 + 1000
        assert series["linkquality"][-1][1] == 87.0
        # A longer period: fewer, wider steps, never more than a chart's width of points.
        res = await tove.get("/api/v1/devices/smoke-1/readings", params={"hours": 720})
        assert res.status_code == 200
        month = res.json()
        assert month["step_s"] == 720 * 3600 // MAX_POINTS + (720 * 3600 % MAX_POINTS > 0)
        points = {s["metric"]: s["points"] for s in month["series"]}
        assert 1 <= len(points["battery_pct"]) <= MAX_POINTS
        assert points["battery_pct"][-1][1] == 12.0  # the newest reading is in the last step
    async with await stored_cloud.authed("adam") as adam:
        log = (await adam.get("/api/v1/audit", params={"action": "device.readings"})).json()
    assert {(e["actor"], e["target"]) for e in log} == {("tove", "device:smoke-1")}
    assert {e["detail"]["hours"] for e in log} >= {6, 720}


async def test_no_store_an_absent_store_and_bad_periods_are_said_never_a_server_error(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with _cloud(tmp_path, mosquitto) as running:
        async with await running.authed("tove") as tove:
            res = await tove.get("/api/v1/devices/smoke-1/readings")
            assert res.status_code == 503
            assert "TRYGG_READINGS_QUERY_URL" in res.json()["detail"]
            assert (await tove.get("/api/v1/devices/nothing/readings")).status_code == 404
            for hours in ("0", "-3", "745", "abc", "1e3", ""):
                res = await tove.get("/api/v1/devices/smoke-1/readings", params={"hours": hours})
                assert res.status_code == 422, (hours, res.text)
                assert res.json()["detail"].startswith("query.hours:")
        # A store that is not there (nothing listens on its port): 502, with why.
        running.settings.readings_query_url = f"http://127.0.0.1:{free_port()}"
        async with await running.authed("tove") as tove:
            res = await tove.get("/api/v1/devices/smoke-1/readings")
            assert res.status_code == 502
            assert (
                res.json()["detail"]
                == "The time-series store: the store did not answer (ConnectError)"
            )
        # Another organisation's technician: no such device there.
        async with admin_session(running.settings) as session:
            await ensure_user(session, "org-b", "tekla", "tekla-pass-1234", Role.TECHNICIAN)
            await session.commit()
        async with running.client() as http:
            form = {"username": "tekla", "password": "tekla-pass-1234"}
            token = (await http.post("/api/v1/auth/token", data=form)).json()["access_token"]
            bearer = {"Authorization": f"Bearer {token}"}
            res = await http.get("/api/v1/devices/smoke-1/readings", headers=bearer)
            assert res.status_code == 404, res.text


async def test_a_device_id_cannot_widen_the_query(victoria: VictoriaMetrics) -> None:
    """Whatever a device's id holds stays a label value: it selects that id or nothing."""
    now_ms = int(time.time() * 1000)
    _write(victoria, "gw-a", [StoredReading(1, "smoke-1", "battery_pct", 50.0, now_ms)])
    end = datetime.now(UTC)
    start = end - timedelta(hours=1)

    async def found(device: str) -> list[str]:
        _start, _step, series = await device_readings(
            victoria.url, "gw-a", device, start, end, timeout_s=5
        )
        return [s.metric for s in series]

    await wait_until(lambda: found("smoke-1"), 20, interval_s=0.2)
    for hostile in ('x"}or{__name__=~".+', 'smoke-1\\"', "smoke-1\n", ".+", 'a"}[1d]) or vector(1'):
        assert await found(hostile) == [], hostile
    assert 'device="x\\"}or{__name__=~\\".+"' in query_for("gw-a", 'x"}or{__name__=~".+', 60)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "text",
        {"status": "error", "error": "parse error at char 3"},
        {"status": "success", "data": {"resultType": "vector", "result": []}},
        {"status": "success", "data": {"resultType": "matrix", "result": {}}},
        {"status": "success"},
    ],
)
def test_what_is_not_a_range_result_is_refused_with_a_reason(body: object) -> None:
    with pytest.raises(ReadingsUnavailable) as refused:
        parse(body)
    assert str(refused.value).startswith("the store answered")


def test_series_items_that_are_broken_are_left_out_and_the_rest_kept() -> None:
    body = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"__name__": "trygg_battery_pct"}, "values": [[2, "50"], [1, "60"]]},
                {
                    "metric": {"__name__": "trygg_linkquality"},
                    "values": [[1, "NaN"], [2, "x"], [3]],
                },
                {"metric": {"__name__": "other_metric"}, "values": [[1, "1"]]},
                {"metric": "not a map", "values": []},
                {"values": [[1, "1"]]},
                "nonsense",
            ],
        },
    }
    series = {s.metric: s.points for s in parse(body)}
    assert series == {"battery_pct": [(1.0, 60.0), (2.0, 50.0)], "linkquality": []}
