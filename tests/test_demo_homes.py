"""The demo's pieces one by one: its command keys (made once, then kept), its gateway's
configuration (a lock on the first homes' front doors, the service's key trusted), the
day it seeds (staff, consent, key-safe notes, visits round its start, never twice), and
the simulated lock that obeys Zigbee2MQTT's ``/set`` and ignores anything else."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from trygg_sim import SimulatedHome, run_homes
from trygg_sim.broker import BrokerLogin
from trygg_sim.zigbee import lock_command

from cloud import CloudSettings
from cloud.clock import database_now
from cloud.commandkeys import load_command_keys
from cloud.db import Consent, Home, Organisation, Team, User, Visit, make_engine, make_sessionmaker
from devices import DeviceType
from devices.codecs.zigbee2mqtt import decode_state
from gateway.actions import supported_actions
from gateway.trusted_keys import load_trusted_keys
from trygg.demo import (
    LOGINS,
    NIGHT_TEAM,
    STAFF_TEAM,
    VISITS,
    DemoOptions,
    command_keys,
    gateway_config,
    lock_id,
    seed,
)

from .servers import ZIGBEE2MQTT, Mosquitto, mqtt_client, pki, wait_until

HOMES = ["home-1", "home-2", "home-3"]


# -- command keys and the gateway's configuration ------------------------------------------


def test_the_command_key_is_made_once_and_kept_and_the_gateway_trusts_it(tmp_path: Path) -> None:
    key, trusted = command_keys(tmp_path)
    pem = key.read_bytes()
    assert key.stat().st_mode & 0o077 == 0  # the service's alone
    signing = load_command_keys(CloudSettings(environment="development", command_key_file=key))
    assert signing.key_id is not None and signing.key_id in load_trusted_keys(trusted)
    # A second start (fresh or not) signs with the same key, so the gateway still trusts it.
    assert command_keys(tmp_path) == (key, trusted)
    assert key.read_bytes() == pem
    assert list(load_trusted_keys(trusted).keys) == [signing.key_id]


@pytest.mark.parametrize("damage", [b"", b"not a key", b"\x00" * 40_000])
def test_a_damaged_command_key_stops_the_demo_with_what_to_do(
    tmp_path: Path, damage: bytes
) -> None:
    (tmp_path / "command-key.pem").write_bytes(damage)
    with pytest.raises(SystemExit, match=r"command key: .*command-key.pem.*remove it"):
        command_keys(tmp_path)


def test_the_first_homes_have_a_lock_the_gateway_can_open_with_the_services_key(
    tmp_path: Path,
) -> None:
    _key, trusted = command_keys(tmp_path)
    config = gateway_config(DemoOptions(data_dir=tmp_path), HOMES, trusted)
    locks = {d.id: d for d in config.devices if d.type is DeviceType.DIGITAL_LOCK}
    assert sorted(locks) == [lock_id("home-1"), lock_id("home-2")]
    for home in ("home-1", "home-2"):
        lock = locks[lock_id(home)]
        assert (lock.home, lock.transport, lock.address) == (
            home,
            "zigbee2mqtt",
            f"{home}/front_door_lock",
        )
        assert supported_actions(lock) == ("unlock", "lock")
        # The door of a home with a lock has its contact too.
        assert f"{home}-front_door" in {d.id for d in config.devices}
    assert config.commands.trusted_keys is not None and len(config.commands.trusted_keys) == 1


# -- the seeded day ------------------------------------------------------------------------


async def test_the_seed_gives_staff_their_day_and_never_plans_it_twice(tmp_path: Path) -> None:
    settings = CloudSettings(
        environment="development", database_url=f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    )
    await seed(settings, HOMES)
    await seed(settings, HOMES)  # a demo started again with --keep
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            now = await database_now(session)
            org = await session.get(Organisation, "demo")
            assert org is not None and org.staff_may_take
            teams = {t.id: t.name for t in (await session.scalars(select(Team))).all()}
            staff = {
                u.username: teams.get(u.team_id or -1)
                for u in (await session.scalars(select(User).where(User.role == "staff"))).all()
            }
            assert staff == {"staff": STAFF_TEAM, "staff2": STAFF_TEAM, "night": NIGHT_TEAM}
            assert {u for u, *_ in LOGINS} >= set(staff)

            homes = {h.id: h for h in (await session.scalars(select(Home))).all()}
            assert all(h.key_safe and h.notes for h in homes.values())
            assert teams[homes["home-2"].team_id or -1] == NIGHT_TEAM  # the night round

            consents = (await session.scalars(select(Consent))).all()
            assert sorted((c.resident_id, c.service, c.given_by) for c in consents) == [
                ("resident-1", "lock", "resident"),
                ("resident-2", "lock", "resident"),
            ]
            assert all(c.valid_from < now and c.withdrawn_at is None for c in consents)

            visits = (await session.scalars(select(Visit).order_by(Visit.starts_at))).all()
            assert len(visits) == len(VISITS)
            mine = [v for v in visits if v.staff == "staff"]
            margin = timedelta(minutes=1)
            now_visit = [v for v in mine if v.starts_at < now < v.ends_at]
            assert [v.home_id for v in now_visit] == ["home-1"]
            assert any(v.ends_at < now - margin for v in mine)  # done earlier
            assert any(v.starts_at > now + margin for v in mine)  # later today
            assert all(v.resident_id == f"resident-{v.home_id[-1]}" for v in visits)
            assert all(v.team_id is not None and v.note for v in visits)
    finally:
        await engine.dispose()


async def test_with_one_home_only_its_visits_are_planned(tmp_path: Path) -> None:
    settings = CloudSettings(
        environment="development", database_url=f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    )
    await seed(settings, ["home-1"])
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            visits = (await session.scalars(select(Visit))).all()
            assert visits and {v.home_id for v in visits} == {"home-1"}
    finally:
        await engine.dispose()


# -- the simulated lock ----------------------------------------------------------------------


def lock_states(messages: list[tuple[str, bytes]]) -> list[str]:
    return [json.loads(payload)["lock_state"] for _topic, payload in messages]


def test_the_simulated_lock_answers_as_zigbee2mqtt_and_the_gateway_reads_it() -> None:
    home = SimulatedHome("home-1", lock=True)
    topic = "zigbee2mqtt/home-1/front_door_lock/set"
    assert home.command_topics == [topic]
    opened = home.obey(topic, b'{"state": "UNLOCK"}')
    assert [t for t, _ in opened] == ["zigbee2mqtt/home-1/front_door_lock"] * 2
    assert lock_states(opened) == ["unlocked", "unlocked"]
    assert json.loads(opened[0][1])["action"] == "unlock"
    assert json.loads(opened[1][1])["action"] == ""  # Zigbee2MQTT's reset
    decoded = decode_state(DeviceType.DIGITAL_LOCK, opened[0][1])
    assert {s.signal.value for s in decoded.signals} == {"lock_opened", "lock_jammed"}
    assert lock_states(home.obey(topic, b'{"state": "lock"}')) == ["locked", "locked"]
    assert SimulatedHome("home-2").command_topics == []  # no lock, no commands


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"UNLOCK",
        b"\xff\xfe",
        b"[]",
        b"null",
        b'{"state": 1}',
        b'{"state": "OPEN"}',
        b'{"brightness": 10}',
        b"[" * 5000,
        json.dumps({"state": "UNLOCK", "pad": "x" * 2000}).encode(),
    ],
)
def test_what_is_not_a_lock_command_leaves_the_lock_as_it_is_and_is_counted(
    payload: bytes,
) -> None:
    home = SimulatedHome("home-1", lock=True)
    assert lock_command(payload) is None
    assert home.obey("zigbee2mqtt/home-1/front_door_lock/set", payload) == []
    assert home.obey("zigbee2mqtt/home-2/front_door_lock/set", b'{"state": "UNLOCK"}') == []
    assert home.ignored == 2
    assert home.devices["lock"].state["lock_state"] == "locked"


@contextlib.asynccontextmanager
async def playing(broker: Mosquitto, homes: list[SimulatedHome]) -> AsyncIterator[None]:
    ready = asyncio.Event()
    login = BrokerLogin(ZIGBEE2MQTT, pki().passwords[ZIGBEE2MQTT], pki().tls.ca_cert)
    task = asyncio.create_task(run_homes("127.0.0.1", broker.port, homes, login=login, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 15)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_on_a_broker_the_lock_obeys_after_garbage_and_the_door_is_walked_through(
    mosquitto: Mosquitto,
) -> None:
    homes = [SimulatedHome(h, lock=h != "home-3", door_after_s=0.05) for h in HOMES]
    seen: dict[str, list[dict[str, object]]] = {}
    async with (
        mqtt_client(mosquitto.port, identifier="test-z2m-watch") as watch,
        mqtt_client(mosquitto.port, identifier="test-gateway") as gateway,
        playing(mosquitto, homes),
    ):
        for name in ("front_door_lock", "front_door"):
            await watch.subscribe(f"zigbee2mqtt/home-2/{name}", qos=1)

        async def listen() -> None:
            async for message in watch.messages:
                assert isinstance(message.payload, bytes)
                seen.setdefault(str(message.topic), []).append(json.loads(message.payload))

        listener = asyncio.create_task(listen())
        try:
            topic = "zigbee2mqtt/home-2/front_door_lock/set"
            for garbage in (b"\x00\xff", b'{"state": "OPEN"}', b"{" * 3000):
                await gateway.publish(topic, garbage, qos=1)
            await gateway.publish(topic, b'{"state": "UNLOCK"}', qos=1)

            def unlocked() -> bool:
                states = seen.get("zigbee2mqtt/home-2/front_door_lock", [])
                return any(s.get("lock_state") == "unlocked" for s in states)

            def walked_through() -> bool:
                contact = [s["contact"] for s in seen.get("zigbee2mqtt/home-2/front_door", [])]
                return contact[-2:] == [False, True]

            await wait_until(unlocked, 10)
            await wait_until(walked_through, 10)
            assert homes[1].ignored == 3
            assert homes[0].devices["lock"].state["lock_state"] == "locked"  # not its door
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


def test_the_readme_shows_every_demo_login_and_the_staff_page() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for username, _role, _team, what in LOGINS:
        assert f"{username} / {username}" in readme and what in readme, username
    assert "http://127.0.0.1:8000/staff" in readme and "docs/demo.md" in readme
