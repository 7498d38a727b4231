"""The migrations build exactly the tables the code declares, on SQLite and PostgreSQL,
and upgrading keeps the alarms that were there."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud.chain import AUDIT, verify_chain
from cloud.db import Base, make_engine, make_sessionmaker
from cloud.migrate import alembic_config, upgrade

from .servers import throwaway_database

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def engine_for(kind: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with contextlib.AsyncExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
        else:
            url = await stack.enter_async_context(throwaway_database())
        engine = make_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_migrated_schema_is_the_declared_schema(kind: str, tmp_path: Path) -> None:
    async with engine_for(kind, tmp_path) as engine:
        await upgrade(engine)

        def differences(connection: Connection) -> list[object]:
            context = MigrationContext.configure(connection)
            return list(compare_metadata(context, Base.metadata))

        async with engine.connect() as conn:
            diff = await conn.run_sync(differences)
    assert diff == []


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_upgrading_keeps_alarms_and_who_acknowledged_them_has_claimed_them(
    kind: str, tmp_path: Path
) -> None:
    async with engine_for(kind, tmp_path) as engine:

        def to(revision: str) -> Callable[[Connection], None]:
            def run(connection: Connection) -> None:
                command.upgrade(alembic_config(connection), revision)

            return run

        async with engine.begin() as conn:
            await conn.run_sync(to("0001"))
            await conn.execute(text("INSERT INTO organisations (id, name) VALUES ('o', 'O')"))
            await conn.execute(
                text(
                    "INSERT INTO alarms (org_id, gateway_id, device_id, device_type, home_id,"
                    " kind, priority, priority_rank, state, event_count, first_event_id,"
                    " occurred_at, received_at, updated_at, acknowledged_by, acknowledged_at)"
                    " VALUES ('o', 'gw', 'd', 'alarm_button', 'h', 'alarm_button', 'critical',"
                    " 1, 'acknowledged', 2, 'e1', :t, :t, :t, 'anna', :t)"
                ),
                {"t": datetime(2026, 11, 24, 2, 14, tzinfo=UTC)},
            )
        await upgrade(engine)
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT state, event_count, claimed_by, version FROM alarms")
                )
            ).one()
    assert tuple(row) == ("acknowledged", 2, "anna", 0)


EVENT_ROW = (
    "INSERT INTO events (id, org_id, gateway_id, alarm_id, kind, priority, device_id,"
    " restore, occurred_at, received_at, detail)"
    " VALUES ('ev-00000001', 'o', :gateway, NULL, 'alarm_button', 'critical', 'd',"
    " :no, :t, :t, '{}')"
)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_upgrading_keys_events_by_gateway_and_keeps_them(kind: str, tmp_path: Path) -> None:
    """Before 0006 one event id was one event whoever sent it; after, it is one per
    organisation and gateway, and the events stored before are all there."""
    values = {"t": datetime(2026, 12, 1, 3, 0, tzinfo=UTC), "no": False}
    async with engine_for(kind, tmp_path) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0005"))
            await conn.execute(text("INSERT INTO organisations (id, name) VALUES ('o', 'O')"))
            await conn.execute(text(EVENT_ROW), {**values, "gateway": "gw-1"})
        await upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text(EVENT_ROW), {**values, "gateway": "gw-2"})
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text(EVENT_ROW), {**values, "gateway": "gw-1"})
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT gateway_id, id FROM events ORDER BY gateway_id"))
            ).all()
    assert [tuple(r) for r in rows] == [("gw-1", "ev-00000001"), ("gw-2", "ev-00000001")]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_upgrading_chains_the_audit_entries_already_there(kind: str, tmp_path: Path) -> None:
    """0012 numbers and hashes the entries written before it, per organisation, oldest
    first, and records each chain's head: the chains verify, and go on from there."""
    async with engine_for(kind, tmp_path) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0011"))
            for org in ("o", "p"):
                await conn.execute(
                    text("INSERT INTO organisations (id, name) VALUES (:o, :o)"), {"o": org}
                )
            for n, org in enumerate(["o", "p", "o", "o"]):
                await conn.execute(
                    text(
                        "INSERT INTO audit_log (org_id, at, actor, role, action, target, detail)"
                        " VALUES (:org, :at, 'anna', 'operator', 'alarm.claim', :target, :detail)"
                    ),
                    {
                        "org": org,
                        "at": datetime(2026, 12, 1, 3, n, 7, 123456, tzinfo=UTC),
                        "target": f"alarm:{n}",
                        "detail": json.dumps({"n": n}),
                    },
                )
        await upgrade(engine)
        async with make_sessionmaker(engine)() as session:
            verdicts = {org: await verify_chain(session, org, AUDIT) for org in ("o", "p")}
            assert {o: (v.valid, v.entries) for o, v in verdicts.items()} == {
                "o": (True, 3),
                "p": (True, 1),
            }
            heads = (await session.execute(text("SELECT org_id, seq FROM log_chains"))).all()
            assert sorted(tuple(h) for h in heads) == [("o", 3), ("p", 1)]
            rows = await session.execute(
                text("SELECT seq FROM audit_log WHERE org_id = 'o' ORDER BY id")
            )
            assert [r.seq for r in rows] == [1, 2, 3]
