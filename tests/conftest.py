from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from cloud import CloudSettings, create_app
from cloud.admin import (
    admin_session,
    ensure_gateway,
    ensure_home,
    ensure_organisation,
    ensure_resident,
    ensure_user,
)
from cloud.db import Gateway as GatewayRow
from cloud.ingest import IngestWorker
from cloud.security import Role
from devices import Event, Priority, stable_event_id
from devices.wire import EventEnvelope, Inventory, InventoryDevice, inventory_topic, split_topic
from gateway import Gateway, GatewayConfig, Store
from trygg.serve import make_server, wait_started

from .browser import browser  # noqa: F401  (the consoles' tests' fixture)
from .servers import (
    DISPATCH,
    ZIGBEE2MQTT,
    Mosquitto,
    VictoriaMetrics,
    cloud_broker,
    free_port,
    login,
    mqtt_client,
    throwaway_database,
    wait_until,
)

# The tests' dispatch services (in-process and the ones they start as processes) run in
# the explicit development mode: production, the default, needs secrets of its own.
os.environ.setdefault("TRYGG_ENVIRONMENT", "development")
# No role needs a second factor unless a test asks for it (tests/test_sign_in.py tests the
# default, which asks it of administrators, supervisors and staff).
os.environ.setdefault("TRYGG_SECOND_FACTOR_ROLES", "")

# shared/ stands beside the repository, in a work tree and in CI's fresh clone alike.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

GATEWAY_ID = "gw-test-1"
USERS = {
    "anna": ("org-a", "anna-pass", Role.OPERATOR),
    "bert": ("org-a", "bert-pass", Role.OPERATOR),
    "stina": ("org-a", "stina-pass", Role.SUPERVISOR),
    "tove": ("org-a", "tove-pass", Role.TECHNICIAN),
    "sara": ("org-a", "sara-pass", Role.STAFF),
    "olle": ("org-b", "olle-pass", Role.OPERATOR),
    "ulla": ("org-b", "ulla-pass", Role.SUPERVISOR),
    "adam": ("org-a", "adam-pass", Role.ADMIN),
}


# Property tests bound their work by example count, never by time: on a busy 2-core
# machine (xdist workers, servers starting) generation can be slow, and a timing health
# check or a per-example deadline would fail a correct test.
settings.register_profile("trygg", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("trygg")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.fail(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A gateway store of its own for the test."""
    s = Store(tmp_path / "gw.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class RunningCloud:
    url: str
    settings: CloudSettings
    app: FastAPI

    @property
    def ingest(self) -> IngestWorker:
        worker: IngestWorker = self.app.state.services.ingest
        return worker

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)

    async def token(self, username: str) -> str:
        async with self.client() as http:
            res = await http.post(
                "/api/v1/auth/token", data={"username": username, "password": USERS[username][1]}
            )
            res.raise_for_status()
            token: str = res.json()["access_token"]
            return token

    async def authed(self, username: str) -> httpx.AsyncClient:
        token = await self.token(username)
        return httpx.AsyncClient(
            base_url=self.url, timeout=10, headers={"Authorization": f"Bearer {token}"}
        )


async def seed_cloud(settings: CloudSettings) -> None:
    """The test organisations, their people, the test gateway and a resident's home."""
    async with admin_session(settings) as session:
        for org in ("org-a", "org-b"):
            await ensure_organisation(session, org, org.upper())
        for username, (org, password, role) in USERS.items():
            await ensure_user(session, org, username, password, role)
        await ensure_gateway(session, "org-a", GATEWAY_ID, "Test gateway")
        await ensure_home(
            session, "org-a", "home-12", "Storgatan 12, Malmö", "key safe by the door, 4711"
        )
        contact = {"name": "Lena", "relation": "daughter", "phone": "+46 70 123 45 67"}
        await ensure_resident(
            session,
            "org-a",
            "res-12",
            "home-12",
            "Ingrid",
            [contact],
            born=date(1936, 4, 2),
            language="sv",
            notes="hard of hearing: let the phone ring long",
        )
        await session.commit()


@contextlib.asynccontextmanager
async def run_cloud(settings: CloudSettings) -> AsyncIterator[RunningCloud]:
    await seed_cloud(settings)
    app = create_app(settings)
    port = free_port()
    server = make_server(app, "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    await wait_started(server, task)
    running = RunningCloud(f"http://127.0.0.1:{port}", settings, app)
    # Subscribed before the test publishes anything (a broker keeps nothing for nobody).
    await asyncio.wait_for(running.ingest.connected.wait(), 20)
    try:
        yield running
    finally:
        server.should_exit = True
        await task


@pytest.fixture(params=["sqlite", "postgresql"])
async def cloud(
    request: pytest.FixtureRequest, mosquitto: Mosquitto, tmp_path: Path
) -> AsyncIterator[RunningCloud]:
    """The dispatch service on a free port, on SQLite and on PostgreSQL."""
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
        else:
            url = await stack.enter_async_context(throwaway_database())
        settings = CloudSettings(database_url=url, **cloud_broker(mosquitto.port))
        yield await stack.enter_async_context(run_cloud(settings))


@pytest.fixture
async def sqlite_cloud(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[RunningCloud]:
    """The dispatch service on SQLite only, for tests about the API rather than the database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    settings = CloudSettings(database_url=url, **cloud_broker(mosquitto.port))
    async with run_cloud(settings) as running:
        yield running


TEST_DEVICES = [
    {
        "id": "pendant-1",
        "type": "alarm_button",
        "address": "flat-12/pendant",
        "home": "home-12",
        "resident": "res-12",
    },
    {"id": "smoke-1", "type": "smoke", "address": "kitchen_smoke", "home": "home-12"},
    {"id": "door-1", "type": "door_contact", "address": "front_door", "home": "home-12"},
    {"id": "lock-1", "type": "digital_lock", "address": "front_door_lock", "home": "home-12"},
]


def gateway_config(
    mosquitto: Mosquitto, store: Path, *, extra: dict[str, object] | None = None, **uplink: object
) -> GatewayConfig:
    broker = {"host": "127.0.0.1", "port": mosquitto.port, **login(GATEWAY_ID)}
    return GatewayConfig.model_validate(
        {
            "gateway": {"id": GATEWAY_ID},
            "store": {"path": store},
            "zigbee2mqtt": broker,
            "uplink": {**broker, **uplink},
            "devices": TEST_DEVICES,
            **(extra or {}),
        }
    )


@pytest.fixture
async def gateway(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = Gateway(gateway_config(mosquitto, tmp_path / "gateway.db", ack_timeout_s=2.0))
    async with gw:
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        await asyncio.wait_for(gw.uplink.connected.wait(), 10)
        yield gw


@pytest.fixture
async def quick_gateway(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Gateway]:
    """The test gateway, telling its devices' state changes within a fifth of a second."""
    settings: dict[str, object] = {"gateway": {"id": GATEWAY_ID, "device_changes_s": 0.2}}
    config = gateway_config(mosquitto, tmp_path / "gateway.db", extra=settings)
    async with Gateway(config) as gw:
        await asyncio.wait_for(gw.link("zigbee2mqtt").ready.wait(), 10)
        await asyncio.wait_for(gw.uplink.connected.wait(), 10)
        yield gw


def make_event(
    source: str,
    n: int,
    priority: Priority = Priority.CRITICAL,
    kind: str = "alarm_button",
    device: str | None = None,
    **fields: Any,
) -> Event:
    """The test gateway's n-th event from ``source``; ``fields`` override the rest."""
    values: dict[str, Any] = {
        "id": stable_event_id(source, str(n)),
        "kind": kind,
        "priority": priority,
        "device_id": device or f"dev-{n}",
        "device_type": "alarm_button",
        "home_id": "home-1",
        "occurred_at": datetime.now(UTC),
    }
    return Event(**(values | fields))


def envelope(
    source: str,
    n: int,
    priority: Priority = Priority.CRITICAL,
    kind: str = "alarm_button",
    device: str | None = None,
    **fields: Any,
) -> EventEnvelope:
    """What the test gateway would send for its n-th event from ``source``."""
    event = make_event(source, n, priority, kind, device, **fields)
    return EventEnvelope(gateway_id=GATEWAY_ID, sent_at=datetime.now(UTC), event=event)


def publisher_of(topic: str) -> str:
    """Who may publish on ``topic``: the dispatch service its acks, commands and status,
    a gateway its own events, status, inventory and results, Zigbee2MQTT the rest."""
    parts = split_topic(topic)
    if topic.startswith("trygg/v1/dispatch/") or (parts and parts[1] in ("acks", "commands")):
        return DISPATCH
    return parts[0] if parts is not None else ZIGBEE2MQTT


async def publish(
    port: int,
    topic: str,
    payload: bytes | str,
    *,
    retain: bool = False,
    username: str | None = None,
) -> None:
    """Publish as the one who would (``publisher_of``), or as ``username``."""
    async with mqtt_client(port, username or publisher_of(topic)) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


_REVISIONS = itertools.count(1)


def inventory_device(
    device_id: str, type: str = "alarm_button", home: str = "home-1", **fields: Any
) -> InventoryDevice:
    """One device as a gateway's inventory names it (``make_event``'s defaults)."""
    values: dict[str, Any] = {"transport": "zigbee2mqtt"} | fields
    return InventoryDevice(id=device_id, type=type, home_id=home, **values)


async def publish_inventory(
    cloud: RunningCloud,
    devices: Iterable[str | InventoryDevice],
    gateway_id: str = GATEWAY_ID,
    *,
    revision: int | None = None,
) -> int:
    """Report ``devices`` as ``gateway_id``'s inventory, as a real gateway does on connect
    (the dispatch service takes events only from devices a gateway reported), and wait
    until the dispatch service has applied it. Returns the revision."""
    number = next(_REVISIONS) if revision is None else revision
    inventory = Inventory(
        gateway_id=gateway_id,
        revision=number,
        sent_at=datetime.now(UTC),
        devices=[d if isinstance(d, InventoryDevice) else inventory_device(d) for d in devices],
    )
    topic = inventory_topic(gateway_id)
    await publish(cloud.settings.mqtt_port, topic, inventory.model_dump_json(), retain=True)
    await wait_until(lambda: inventory_revision(cloud, gateway_id, number), 20)
    return number


async def inventory_revision(cloud: RunningCloud, gateway_id: str, at_least: int) -> bool:
    async with cloud.app.state.services.sessions() as session:
        row = await session.get(GatewayRow, gateway_id)
        return row is not None and (row.inventory_revision or -1) >= at_least
