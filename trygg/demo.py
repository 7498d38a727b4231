"""``trygg demo``: simulated homes -> gateway -> dispatch -> console, in one process,
on embedded defaults (an embedded MQTT broker and SQLite), no external service needed.

Doors open in it as in a deployment: the dispatch service signs commands with a key kept
in the data directory, the gateway trusts that key's public half (``dispatch-keys.json``
beside it), and the front doors of the first homes have Zigbee2MQTT locks that obey the
gateway. Staff have planned visits today, moved to the demo's start each time it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from amqtt.broker import Broker
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from trygg_sim import SimulatedHome, run_homes
from trygg_sim.serial import GpsWalk, PtyPort

from cloud import CloudSettings, create_app
from cloud.admin import (
    ensure_gateway,
    ensure_home,
    ensure_organisation,
    ensure_resident,
    ensure_team,
    ensure_user,
)
from cloud.clock import database_now
from cloud.commandkeys import TRUSTED_KEYS_FILE, CommandKeyError, export_trusted_keys, new_key_file
from cloud.db import Consent, Organisation, Resident, Visit, make_engine, make_sessionmaker
from cloud.migrate import upgrade
from cloud.security import Role
from cloud.signin import second_factor_roles
from gateway import Gateway, GatewayConfig

from .serve import make_server, port_is_free, stop_on_signals, wait_started

log = logging.getLogger("trygg.demo")

ORG = ("demo", "Demo municipality home care")
GATEWAY_ID = "gw-demo-1"
# The embedded broker is anonymous and unencrypted: it listens on loopback only, whatever
# --host says, so that nothing beyond this machine can reach it.
BROKER_HOST = "127.0.0.1"
# (username = password, role, team, what they do): one login for every role.
OPERATORS_TEAM, STAFF_TEAM, TECHNICIANS_TEAM = "Larmcentralen", "Hemtjänst Centrum", "Teknik"
NIGHT_TEAM = "Nattpatrullen"
TEAMS = (OPERATORS_TEAM, STAFF_TEAM, NIGHT_TEAM, TECHNICIANS_TEAM)
LOGINS = [
    ("operator", Role.OPERATOR, OPERATORS_TEAM, "alarm operator"),
    ("operator2", Role.OPERATOR, OPERATORS_TEAM, "a second operator (try two consoles)"),
    (
        "supervisor",
        Role.SUPERVISOR,
        OPERATORS_TEAM,
        "supervisor: service level, audit log, residents' consents and home rules",
    ),
    ("staff", Role.STAFF, STAFF_TEAM, "home-care staff on the phone: a visit in progress now"),
    ("staff2", Role.STAFF, STAFF_TEAM, "home-care staff, the same team: a visit now too"),
    ("night", Role.STAFF, NIGHT_TEAM, "night patrol: takes the team's alarms itself"),
    ("technician", Role.TECHNICIAN, TECHNICIANS_TEAM, "technician: devices, gateways"),
    ("admin", Role.ADMIN, None, "administrator: people, homes, residents"),
]
# Fictional residents, one per simulated home (and around again for more homes).
RESIDENTS: list[dict[str, Any]] = [
    {
        "name": "Ingrid Nilsson",
        "born": date(1936, 4, 2),
        "language": "sv",
        "address": "Storgatan 12, 211 34 Malmö",
        "key_safe": "Digitalt lås; reserv: nyckelgömma vid dörren, kod 4711",
        "home_notes": "Porten: kod 1234. 2 tr, hiss finns. Ringklockan hörs inte: knacka.",
        "notes": "Hör dåligt: låt telefonen ringa länge.",
        "contacts": [{"name": "Lena Nilsson", "relation": "dotter", "phone": "+46 70 123 45 67"}],
    },
    {
        "name": "Margit Persson",
        "born": date(1932, 11, 30),
        "language": "sv",
        "address": "Bergsgatan 21, 214 22 Malmö",
        "key_safe": "Digitalt lås; reserv: nyckel i kodlåda på cykelstället, kod 0815",
        "home_notes": "Bottenvåning, dörren till vänster. Katten får inte gå ut.",
        "notes": "Demens, går gärna ut på natten. Bär GPS-larm.",
        "contacts": [{"name": "Göran Persson", "relation": "son", "phone": "+46 70 987 65 43"}],
    },
    {
        "name": "Aino Virtanen",
        "born": date(1941, 9, 17),
        "language": "fi",
        "address": "Kornettsgatan 4, 214 31 Malmö",
        "key_safe": "Portkod 2580; nyckel hos hemtjänsten",
        "home_notes": "3 tr, ingen hiss. Parkera på gästplatsen vid soprummet.",
        "notes": "Talar finska, lite svenska. Diabetes.",
        "contacts": [{"name": "Mikko Virtanen", "relation": "son", "phone": "+46 73 555 01 02"}],
    },
    {
        "name": "Kemal Yılmaz",  # noqa: RUF001 (a Turkish dotless i)
        "born": date(1944, 1, 23),
        "language": "tr",
        "address": "Ystadvägen 58, 214 45 Malmö",
        "key_safe": "Nyckelgömma i trapphuset, kod 1903",
        "home_notes": "1 tr. Skor av i hallen.",
        "notes": "Rullator. Hustrun Ayşe bor också här.",
        "contacts": [
            {"name": "Ayşe Yılmaz", "relation": "hustru", "phone": "+46 40 12 34 56"},  # noqa: RUF001
            {"name": "Deniz Yılmaz", "relation": "dotter", "phone": "+46 76 222 33 44"},  # noqa: RUF001
        ],
    },
]


# Where the homes are (central Malmö), in the residents' order.
HOME_LOCATIONS = [(55.6050, 13.0038), (55.5989, 13.0129), (55.5930, 13.0007), (55.5889, 13.0214)]
# The resident of this home wears a GPS pendant with a safe zone round the home, and now
# and then walks out of it (GPS_HOME is 1-based, like the homes).
GPS_HOME = 2
SAFE_ZONE_M = 250.0
# These homes' front doors have a digital lock (a Zigbee2MQTT lock, simulated), and their
# residents have consented to the lock service. Even homes are on the night patrol's round
# (their alarms are its team's, to take), odd ones the day team's.
LOCK_HOMES = (1, 2)
LOCK_DEVICE = "front_door_lock"
COMMAND_KEY_FILE = "command-key.pem"


def lock_id(home: str) -> str:
    return f"{home}-{LOCK_DEVICE}"


def team_of(index: int) -> str:
    return NIGHT_TEAM if index % 2 == 0 else STAFF_TEAM


@dataclass(frozen=True)
class PlannedVisit:
    """A visit of the demo's day, in minutes from the demo's start."""

    key: str  # its external id: the same visit is moved, not added again, at each start
    staff: str
    home: int
    from_min: int
    to_min: int
    note: str


# The day as the demo starts it: a visit in progress now (its door opens at once), one
# later today, one done earlier; a second staff member in the other locked home now; the
# night patrol's check six hours on. A start late in the day puts some of them on another day.
VISITS = (
    PlannedVisit("demo-earlier", "staff", 1, -240, -210, "Frukost och medicin"),
    PlannedVisit("demo-now", "staff", 1, -10, 35, "Mat och en promenad"),
    PlannedVisit("demo-later", "staff", 2, 150, 180, "Dusch"),
    PlannedVisit("demo-now-2", "staff2", 2, -5, 25, "Tillsyn och medicin"),
    PlannedVisit("demo-patrol", "night", 2, 360, 375, "Tillsyn: sover hon?"),
)


def location_of(index: int) -> tuple[float, float]:
    return HOME_LOCATIONS[(index - 1) % len(HOME_LOCATIONS)]


def resident_of(index: int) -> dict[str, Any]:
    """The fictional resident of home ``index`` (1-based)."""
    return RESIDENTS[(index - 1) % len(RESIDENTS)]


@dataclass(frozen=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    mqtt_port: int = 18830
    data_dir: Path = Path(".trygg-demo")
    homes: int = 2
    alarm_every_s: float = 45.0
    fresh: bool = True


def broker_config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def command_keys(data_dir: Path) -> tuple[Path, Path]:
    """The dispatch service's command signing key and the trusted keys file the gateway
    loads, in the data directory: the key is made on the first run and kept after (a
    fresh start keeps it too), so the gateway trusts what the service signs."""
    key, trusted = data_dir / COMMAND_KEY_FILE, data_dir / TRUSTED_KEYS_FILE
    try:
        if not key.exists():
            new_key_file(key)
        export_trusted_keys(CloudSettings(environment="development", command_key_file=key), trusted)
    except CommandKeyError as exc:
        raise SystemExit(f"the demo's command key: {exc} (remove it to make a new one)") from None
    return key.resolve(), trusted.resolve()


def has_lock(index: int) -> bool:
    return index in LOCK_HOMES


def gateway_config(
    options: DemoOptions, home_ids: list[str], trusted_keys: Path | None = None
) -> GatewayConfig:
    devices: list[dict[str, Any]] = []
    for index, home in enumerate(home_ids, start=1):
        kinds = [
            ("pendant", "alarm_button"),
            ("front_door", "door_contact"),
            ("hallway_motion", "motion"),
            ("kitchen_smoke", "smoke"),
            ("bathroom_leak", "water_leak"),
        ]
        if has_lock(index):
            kinds.append((LOCK_DEVICE, "digital_lock"))
        for name, kind in kinds:
            devices.append(
                {
                    "id": f"{home}-{name}",
                    "type": kind,
                    "address": f"{home}/{name}",
                    "home": home,
                    "resident": f"resident-{index}",
                }
            )
    serial = []
    if len(home_ids) >= GPS_HOME:
        latitude, longitude = location_of(GPS_HOME)
        zone = {"latitude": latitude, "longitude": longitude, "radius_m": SAFE_ZONE_M}
        serial.append({"name": "gps", "path": str(gps_path(options)), "protocol": "nmea"})
        devices.append(
            {
                "id": f"home-{GPS_HOME}-gps",
                "type": "gps_pendant",
                "transport": "nmea",
                "port": "gps",
                "home": f"home-{GPS_HOME}",
                "resident": f"resident-{GPS_HOME}",
                "safe_zone": zone,
            }
        )
    broker = {"host": BROKER_HOST, "port": options.mqtt_port}
    return GatewayConfig.model_validate(
        {
            "gateway": {"id": GATEWAY_ID},
            "store": {"path": options.data_dir / "gateway.db"},
            "zigbee2mqtt": broker,
            "uplink": broker,
            "serial": serial,
            "commands": {"trusted_keys_file": trusted_keys},
            "devices": devices,
        }
    )


def gps_path(options: DemoOptions) -> Path:
    """The GPS pendant's receiver: a pseudo-terminal, as a USB serial port would be."""
    return (options.data_dir / "gps-pendant").resolve()


async def wander(port: PtyPort, home: tuple[float, float], every_s: float, seed: int) -> None:
    """The GPS pendant's wearer: at home a while, then out for a walk that leaves the safe
    zone, then back; a fix every second, as a receiver sends it."""
    rng = random.Random(seed)
    walk = GpsWalk(home[0], home[1], rng=rng)
    loop = asyncio.get_running_loop()

    async def for_(seconds: float) -> None:
        end = loop.time() + seconds
        while loop.time() < end:
            walk.advance(1.0)
            port.write(walk.sentences(datetime.now(UTC)))
            await asyncio.sleep(1.0)

    # Out of the zone in about 80 s at a brisk walk; sooner when alarms come sooner.
    leave_s = min(80.0, 2 * every_s)
    while True:
        walk.speed_kmh = 0.0
        await for_(rng.uniform(1.0, 2.0) * every_s)
        walk.bearing_deg = rng.uniform(0, 360)
        walk.speed_kmh = SAFE_ZONE_M * 1.3 / leave_s * 3.6
        await for_(leave_s * 1.5)
        walk.bearing_deg = (walk.bearing_deg + 180) % 360  # and back home
        await for_(leave_s * 1.5)
        walk.latitude, walk.longitude = home


async def seed(settings: CloudSettings, home_ids: list[str]) -> None:
    """A small alarm centre: its teams and people (a login for every role), its gateway,
    the homes it serves with their residents, their consent to the lock service where the
    door has a lock, and the staff's visits of the day."""
    engine = make_engine(settings.database_url)
    try:
        await upgrade(engine)
        async with make_sessionmaker(engine)() as session:
            org = ORG[0]
            organisation = await ensure_organisation(session, *ORG)
            organisation.staff_may_take = True  # the night patrol takes its team's alarms
            teams = {}
            for name in TEAMS:
                teams[name] = (await ensure_team(session, org, name)).id
            for username, role, team, _what in LOGINS:
                team_id = teams[team] if team else None
                await ensure_user(session, org, username, username, role, team_id=team_id)
            await ensure_gateway(session, org, GATEWAY_ID, "Demo gateway")
            now = await database_now(session)
            for index, home in enumerate(home_ids, start=1):
                person = resident_of(index)
                served = await ensure_home(
                    session,
                    org,
                    home,
                    person["address"],
                    person["key_safe"],
                    location=location_of(index),
                )
                served.team_id = teams[team_of(index)]
                served.notes = served.notes or person["home_notes"]
                resident = await ensure_resident(
                    session,
                    org,
                    f"resident-{index}",
                    home,
                    person["name"],
                    person["contacts"],
                    born=person["born"],
                    language=person["language"],
                    notes=person["notes"],
                )
                if has_lock(index):
                    await ensure_lock_consent(session, resident, now)
            await plan_visits(session, organisation, teams, home_ids, now)
            await session.commit()
    finally:
        await engine.dispose()


async def ensure_lock_consent(session: AsyncSession, resident: Resident, now: datetime) -> Consent:
    """The resident's own consent to staff opening the door with the lock, recorded a
    month ago by the administrator (kept as it is when there is one)."""
    found = (
        await session.execute(
            select(Consent).where(
                Consent.org_id == resident.org_id,
                Consent.resident_id == resident.id,
                Consent.service == "lock",
                Consent.withdrawn_at.is_(None),
            )
        )
    ).scalar_one_or_none()
    if found is not None:
        return found
    given = now - timedelta(days=30)
    consent = Consent(
        org_id=resident.org_id,
        resident_id=resident.id,
        service="lock",
        given_by="resident",
        given_by_name=resident.name,
        recorded_by="admin",
        recorded_at=given,
        valid_from=given,
    )
    session.add(consent)
    await session.flush()
    return consent


async def plan_visits(
    session: AsyncSession,
    organisation: Organisation,
    teams: dict[str, int],
    home_ids: list[str],
    now: datetime,
) -> list[Visit]:
    """The day's visits (``VISITS``), placed round ``now``; each is found again by its
    external id and moved, so a demo started with --keep does not plan them twice."""
    team_of_login = {username: team for username, _role, team, _what in LOGINS}
    planned = []
    for plan in VISITS:
        if plan.home > len(home_ids):
            continue
        visit = (
            await session.execute(
                select(Visit).where(Visit.org_id == organisation.id, Visit.external_id == plan.key)
            )
        ).scalar_one_or_none()
        if visit is None:
            visit = Visit(
                org_id=organisation.id, external_id=plan.key, created_by="admin", created_at=now
            )
            session.add(visit)
        team = team_of_login[plan.staff]
        visit.home_id = home_ids[plan.home - 1]
        visit.resident_id = f"resident-{plan.home}"
        visit.staff = plan.staff
        visit.team_id = teams[team] if team else None
        visit.starts_at = now + timedelta(minutes=plan.from_min)
        visit.ends_at = now + timedelta(minutes=plan.to_min)
        visit.note = plan.note
        visit.updated_at = now
        visit.cancelled_at = None
        planned.append(visit)
    await session.flush()
    return planned


async def wait_for_event(
    event: asyncio.Event, task: asyncio.Task[None], what: str, limit_s: float = 30
) -> None:
    """Wait for ``event``; the task that sets it ending first is its error."""
    waiting = asyncio.create_task(event.wait())
    try:
        await asyncio.wait({waiting, task}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if task.done():
        task.result()  # raises what stopped it
        raise RuntimeError(f"{what} stopped while starting")
    if not event.is_set():
        raise RuntimeError(f"{what} did not start within {limit_s:.0f} s")


async def run_demo(options: DemoOptions, ready: asyncio.Event | None = None) -> None:
    for what, host, port in (
        ("console", options.host, options.port),
        ("MQTT broker", BROKER_HOST, options.mqtt_port),
    ):
        if not port_is_free(host, port):
            raise SystemExit(
                f"port {port} for the {what} is in use; choose another with --port/--mqtt-port"
            )
    options.data_dir.mkdir(parents=True, exist_ok=True)
    if options.fresh:
        for name in ("cloud.db", "gateway.db"):
            for suffix in ("", "-wal", "-shm"):
                (options.data_dir / f"{name}{suffix}").unlink(missing_ok=True)
    command_key, trusted_keys = command_keys(options.data_dir)

    settings = CloudSettings(
        # The demo's own: the public development secret and an embedded broker on loopback.
        environment="development",
        database_url=f"sqlite+aiosqlite:///{(options.data_dir / 'cloud.db').resolve()}",
        mqtt_host=BROKER_HOST,
        mqtt_port=options.mqtt_port,
        # One replica, and the embedded broker (amqtt) has no shared subscriptions.
        mqtt_shared_group="",
        command_key_file=command_key,
    )
    home_ids = [f"home-{i}" for i in range(1, options.homes + 1)]
    stop = asyncio.Event()
    stop_on_signals(stop)

    async with contextlib.AsyncExitStack() as stack:
        # Start order: broker, database, dispatch service, gateway, homes; undone in reverse.
        broker = Broker(broker_config(BROKER_HOST, options.mqtt_port))
        await broker.start()
        stack.push_async_callback(broker.shutdown)
        await seed(settings, home_ids)

        server = make_server(create_app(settings), options.host, options.port)
        server_task = asyncio.create_task(server.serve(), name="dispatch")

        async def stop_server() -> None:
            server.should_exit = True
            await server_task

        stack.push_async_callback(stop_server)
        await wait_started(server, server_task)

        gateway = Gateway(gateway_config(options, home_ids, trusted_keys))
        await stack.enter_async_context(gateway)

        if len(home_ids) >= GPS_HOME:
            pendant = PtyPort(gps_path(options))
            pendant.plug()  # before the gateway opens it
            stack.callback(pendant.unplug)

        homes = [
            SimulatedHome(home, alarm_every_s=options.alarm_every_s, lock=has_lock(index))
            for index, home in enumerate(home_ids, start=1)
        ]
        listening = asyncio.Event()
        simulating = run_homes(BROKER_HOST, options.mqtt_port, homes, ready=listening)
        sim_task = asyncio.create_task(simulating, name="sim")
        walker = None
        if len(home_ids) >= GPS_HOME:
            walking = wander(pendant, location_of(GPS_HOME), options.alarm_every_s, seed=GPS_HOME)
            walker = asyncio.create_task(walking, name="gps pendant")

        async def stop_sim() -> None:
            for task in (sim_task, walker):
                if task is None:
                    continue
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        stack.push_async_callback(stop_sim)
        # Ready only once the locks listen: a door opened right after the banner opens.
        await wait_for_event(listening, sim_task, "the simulated homes")

        url = f"http://{options.host}:{options.port}/"
        locked = [home for index, home in enumerate(home_ids, start=1) if has_lock(index)]
        locks = f"a digital lock on the front door of {' and '.join(locked)}"
        roles = second_factor_roles(settings)
        logins = "\n".join(
            f"    {u} / {u}".ljust(30)
            + what
            + (" (sets up a second factor at the first sign-in)" if role in roles else "")
            for u, role, _team, what in LOGINS
        )
        print(
            f"\nTrygg demo is running.\n"
            f"  Operator console: {url}\n"
            f"  Staff (phone):    {url}staff\n"
            f"  Technicians:      {url}technician\n"
            f"  Logins (username / password):\n{logins}\n"
            "    A second factor: any authenticator app (scan the code or type the key).\n"
            f"  API schema:       {url}openapi.json\n"
            f"  MQTT broker:      {BROKER_HOST}:{options.mqtt_port} (embedded, plain TCP and"
            " no passwords:\n"
            "                    a development broker; a deployment uses TLS and one identity\n"
            "                    per gateway, see docs/security.md)\n"
            f"  Simulated homes:  {len(homes)}, "
            f"an alarm about every {options.alarm_every_s:.0f} s each; {locks}\n"
            f"Press Ctrl-C to stop.\n",
            flush=True,
        )
        if ready is not None:
            ready.set()
        await stop.wait()
        print("stopping…", flush=True)
    print("Trygg demo stopped.", flush=True)
