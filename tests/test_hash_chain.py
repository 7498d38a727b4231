"""The hash chains of the lock logs and the audit log (docs/audit.md): a valid chain
verifies, and altering, deleting or reordering one entry is found and the entry named, in
the dispatch service's database (SQLite and PostgreSQL) and in the gateway's store; two
replicas writing at once still make one valid chain per organisation and lock."""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from cloud.admin import ensure_organisation, ensure_user, find_user
from cloud.audit import audit, read_audit
from cloud.chain import AUDIT, lock_chain, verify_chain
from cloud.db import Alarm, AuditEntry, LockLogEntry, make_engine, make_sessionmaker
from cloud.locklog import lock_log
from cloud.migrate import upgrade
from cloud.security import Role
from devices import Event, Priority
from devices.chain import ChainCheck, Head, Link, Problem, Verdict, next_link
from gateway import LockLogEntry as GatewayEntry
from gateway import Store, verify_store_file
from trygg.cli import app

from .servers import throwaway_database

pytestmark = pytest.mark.integration


# -- the chain itself ---------------------------------------------------------------------
def chain_of(n: int) -> list[Link]:
    links: list[Link] = []
    for i in range(1, n + 1):
        head = Head(links[-1].seq, links[-1].hash) if links else None
        links.append(next_link(head, {"n": i, "text": f"entry {i}"}))
    return links


def altered(links: list[Link], seq: int) -> list[Link]:
    """Entry ``seq``'s content changed, its hash left as it was."""
    old = links[seq - 1]
    return [*links[: seq - 1], replace(old, fields={**old.fields, "text": "changed"}), *links[seq:]]


def rehashed(links: list[Link], seq: int) -> list[Link]:
    """Entry ``seq`` rewritten by someone who recomputed its hash."""
    old = links[seq - 1]
    head = None if seq == 1 else Head(seq - 1, links[seq - 2].hash)
    return [*links[: seq - 1], next_link(head, {**old.fields, "text": "forged"}), *links[seq:]]


def removed(links: list[Link], *seqs: int) -> list[Link]:
    return [link for link in links if link.seq not in seqs]


def swapped(links: list[Link], a: int, b: int) -> list[Link]:
    """The rows of entries ``a`` and ``b`` trade places (their numbers swapped)."""
    out = list(links)
    out[a - 1], out[b - 1] = replace(links[b - 1], seq=a), replace(links[a - 1], seq=b)
    return out


def verdict(links: list[Link], recorded: Head | None = None) -> Verdict:
    check = ChainCheck(recorded)
    for link in links:
        check.feed(link)
    return check.verdict()


def head_of(links: list[Link]) -> Head:
    return Head(links[-1].seq, links[-1].hash)


SIX = chain_of(6)


@pytest.mark.parametrize(
    ("links", "recorded", "said"),
    [
        (SIX, None, f"valid: 6 entries, newest 6 {SIX[-1].hash}"),
        (SIX, head_of(SIX), f"valid: 6 entries, newest 6 {SIX[-1].hash}"),
        (
            altered(SIX, 3),
            None,
            "broken at entry 3: altered: entry 3's content does not match its hash",
        ),
        (
            removed(SIX, 3),
            None,
            "broken at entry 3: missing: entry 3 is missing: entry 4 follows entry 2",
        ),
        (
            removed(SIX, 1, 2),
            None,
            "broken at entry 1: missing: entries 1-2 are missing: the log begins at entry 3",
        ),
        (
            swapped(SIX, 3, 4),
            None,
            "broken at entry 3: out_of_order: the entry stored as 3 was written after the one"
            " stored as 4: entries were reordered",
        ),
        (
            swapped(SIX, 2, 5),
            None,
            "broken at entry 2: out_of_order: the entry stored as 2 was written after the one"
            " stored as 4: entries were reordered",
        ),
        (
            rehashed(SIX, 3),
            None,
            "broken at entry 3: altered: entry 4 does not follow entry 3: entry 3 was rewritten"
            " with its hash recomputed (or entries between them were removed and the rest"
            " renumbered)",
        ),
        (
            removed(SIX, 6),
            head_of(SIX),
            "broken at entry 6: missing: entry 6 is missing at the end: the chain's head"
            " records 6 entries",
        ),
        (
            rehashed(SIX, 6),
            head_of(SIX),
            "broken at entry 6: altered: entry 6 differs from the chain's head",
        ),
        (
            SIX,
            Head(5, SIX[4].hash),
            "broken at entry 6: altered: the chain's head records 5 entries, but there are 6:"
            " entries were added behind the log's back",
        ),
        (
            [],
            head_of(SIX),
            "broken at entry 1: missing: entries 1-6 are missing at the end: the chain's head"
            " records 6 entries",
        ),
    ],
)
def test_the_check_names_the_first_broken_entry_and_what_is_wrong(
    links: list[Link], recorded: Head | None, said: str
) -> None:
    assert verdict(links, recorded).describe() == said


def test_without_an_anchor_the_newest_entries_can_be_removed_unnoticed() -> None:
    """What docs/audit.md says the chain alone cannot catch: truncation of its end."""
    assert verdict(removed(SIX, 5, 6)).valid


@given(st.integers(2, 40), st.data())
def test_any_one_change_is_found_at_the_entry_changed(n: int, data: st.DataObject) -> None:
    links = chain_of(n)
    seq = data.draw(st.integers(1, n), label="seq")
    change = data.draw(st.sampled_from(["alter", "remove", "swap", "rehash"]), label="change")
    expected = Problem.ALTERED
    if change == "alter":
        tampered = altered(links, seq)
    elif change == "remove":
        tampered, expected = removed(links, seq), Problem.MISSING
    elif change == "rehash":
        tampered = rehashed(links, seq)
    else:
        seq = min(seq, n - 1)
        other = data.draw(st.integers(seq + 1, n), label="other")
        tampered, expected = swapped(links, seq, other), Problem.OUT_OF_ORDER
    found = verdict(tampered, head_of(links))
    assert (found.valid, found.first_broken, found.problem) == (False, seq, expected)


# -- the dispatch service's database -----------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    else:
        async with throwaway_database() as url:
            yield url


@contextlib.asynccontextmanager
async def sessions_of(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(url)
    try:
        await upgrade(engine)
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def seed(sessions: async_sessionmaker[AsyncSession], entries: int = 6) -> None:
    """Two organisations; ``entries`` audit entries and lock-log entries in each."""
    async with sessions() as session:
        for org, name in (("org-a", "anna"), ("org-b", "olle")):
            await ensure_organisation(session, org, org.upper())
            await ensure_user(session, org, name, f"{name}-password", Role.OPERATOR)
        await session.commit()
    for i in range(1, entries + 1):
        async with sessions() as session:
            for username, lock in (("anna", "lock-1"), ("olle", "lock-9")):
                user = await find_user(session, username)
                assert user is not None
                audit(session, user, "alarm.claim", f"alarm:{i}", {"n": i, "when": [1.5, None]})
                lock_log(
                    session,
                    org_id=user.org_id,
                    lock_id=lock,
                    home_id="home-12",
                    actor="sara",
                    role="staff",
                    action="unlock",
                    outcome="granted",
                    command_id=f"cmd-{i}",
                    detail={"visit": i},
                )
            await session.commit()


WHERE = {AUDIT: "org_id = 'org-a'", lock_chain("lock-1"): "org_id = 'org-a' AND lock_id = 'lock-1'"}
TABLE = {AUDIT: "audit_log", lock_chain("lock-1"): "lock_log"}
FIELD = {AUDIT: "target = 'alarm:99'", lock_chain("lock-1"): "outcome = 'refused'"}
TAMPERING = {
    "altered": (["UPDATE {table} SET {field} WHERE {where} AND seq = 3"], Problem.ALTERED),
    "deleted": (["DELETE FROM {table} WHERE {where} AND seq = 3"], Problem.MISSING),
    "reordered": (
        [
            "UPDATE {table} SET seq = -3 WHERE {where} AND seq = 3",
            "UPDATE {table} SET seq = 3 WHERE {where} AND seq = 4",
            "UPDATE {table} SET seq = 4 WHERE {where} AND seq = -3",
        ],
        Problem.OUT_OF_ORDER,
    ),
}


def cli(url: str, *args: str) -> tuple[int, str]:
    env = {"TRYGG_DATABASE_URL": url, "TRYGG_ENVIRONMENT": "development"}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


async def test_valid_chains_verify_in_the_database_and_on_the_command_line(database: str) -> None:
    async with sessions_of(database) as sessions:
        await seed(sessions)
        async with sessions() as session:
            for org, chain in (("org-a", AUDIT), ("org-a", lock_chain("lock-1"))):
                found = await verify_chain(session, org, chain)
                assert (found.valid, found.entries) == (True, 6), found
            rows = (await session.execute(select(AuditEntry.seq).order_by(AuditEntry.id))).all()
            assert [r.seq for r in rows] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]  # per org
    code, out = await asyncio.to_thread(cli, database, "cloud", "verify-log")
    assert code == 0, out
    lines = [line.split(", newest")[0] for line in out.splitlines()]
    assert lines == [
        "org-a audit: valid: 6 entries",
        "org-a lock:lock-1: valid: 6 entries",
        "org-b audit: valid: 6 entries",
        "org-b lock:lock-9: valid: 6 entries",
    ]
    code, out = await asyncio.to_thread(cli, database, "cloud", "verify-log", "--org", "nobody")
    assert (code, out.strip()) == (2, "error: no organisation nobody")


@pytest.mark.parametrize("chain", [AUDIT, lock_chain("lock-1")])
@pytest.mark.parametrize("tampering", sorted(TAMPERING))
async def test_one_entry_altered_deleted_or_reordered_is_found_and_named(
    database: str, chain: str, tampering: str
) -> None:
    statements, problem = TAMPERING[tampering]
    async with sessions_of(database) as sessions:
        await seed(sessions)
        async with sessions() as session:
            for statement in statements:
                sql = statement.format(table=TABLE[chain], where=WHERE[chain], field=FIELD[chain])
                await session.execute(text(sql))
            await session.commit()
            found = await verify_chain(session, "org-a", chain)
            assert (found.valid, found.first_broken, found.problem) == (False, 3, problem)
            # Every other chain is its own, and untouched.
            untouched = lock_chain("lock-1") if chain == AUDIT else AUDIT
            assert (await verify_chain(session, "org-a", untouched)).valid
            assert (await verify_chain(session, "org-b", AUDIT)).valid
            assert (await verify_chain(session, "org-b", lock_chain("lock-9"))).valid
    code, out = await asyncio.to_thread(cli, database, "cloud", "verify-log", "--org", "org-a")
    assert code == 1, out
    assert f"org-a {chain}: broken at entry 3: {problem.value}: " in out
    assert "1 of 2 chains broken" in out


async def test_entries_removed_from_the_end_are_found_by_the_chain_head(database: str) -> None:
    async with sessions_of(database) as sessions:
        await seed(sessions)
        async with sessions() as session:
            await session.execute(text("DELETE FROM audit_log WHERE org_id = 'org-a' AND seq > 4"))
            await session.commit()
            found = await verify_chain(session, "org-a", AUDIT)
            assert found.describe() == (
                "broken at entry 5: missing: entries 5-6 are missing at the end: the chain's"
                " head records 6 entries"
            )
            # The log still works, and the next entry says the removal for good: it follows
            # entry 6, which is gone.
            user = await find_user(session, "anna")
            assert user is not None
            audit(session, user, "alarm.resolve", "alarm:7")
            await session.commit()
            again = await verify_chain(session, "org-a", AUDIT)
            assert (again.first_broken, again.problem) == (5, Problem.MISSING)


async def test_a_head_lost_or_set_back_does_not_stop_the_log(database: str) -> None:
    """Every operator action is audited: a damaged head row must not make them fail."""
    async with sessions_of(database) as sessions:
        await seed(sessions, entries=3)
        async with sessions() as session:
            await session.execute(text("DELETE FROM log_chains WHERE org_id = 'org-a'"))
            await session.execute(text("UPDATE log_chains SET seq = 1 WHERE org_id = 'org-b'"))
            await session.commit()
            for username in ("anna", "olle"):
                user = await find_user(session, username)
                assert user is not None
                audit(session, user, "alarm.claim", "alarm:4")
            await session.commit()
            for org in ("org-a", "org-b"):
                found = await verify_chain(session, org, AUDIT)
                assert (found.valid, found.entries) == (True, 4), found


async def test_a_rollback_drops_the_entry_with_what_it_records(database: str) -> None:
    async with sessions_of(database) as sessions:
        await seed(sessions, entries=1)
        async with sessions() as session:
            user = await find_user(session, "anna")
            assert user is not None
            await session.commit()  # no transaction open when the entry is made
            audit(session, user, "alarm.claim", "alarm:rolled-back")
            await session.rollback()
            await session.refresh(user)
            audit(session, user, "alarm.claim", "alarm:kept")
            await session.commit()
            targets = [e.target for e in await read_audit(session, "org-a")]
            assert targets == ["alarm:kept", "alarm:1"]
            assert (await verify_chain(session, "org-a", AUDIT)).valid


async def test_two_replicas_writing_at_once_make_one_valid_chain(database: str) -> None:
    """Two engines on one database (two replicas), four writers each; each transaction
    updates one of two alarm rows first, as the lifecycle does before it audits, so that a
    deadlock between the alarms' row locks and the chains' heads would show."""
    rounds, writers = 12, 4
    async with sessions_of(database) as first, sessions_of(database) as second:
        await seed(first, entries=0)
        now = datetime.now(UTC)
        async with first() as session:
            alarms = [_alarm(now, n) for n in range(2)]
            session.add_all(alarms)
            await session.commit()
            alarm_ids = [a.id for a in alarms]

        async def writer(sessions: async_sessionmaker[AsyncSession], n: int) -> None:
            rng = random.Random(n)
            for i in range(rounds):
                async with sessions() as session:
                    user = await find_user(session, "anna")
                    assert user is not None
                    if i % 3:
                        alarm = rng.choice(alarm_ids)
                        bump = update(Alarm).where(Alarm.id == alarm)
                        await session.execute(bump.values(version=Alarm.version + 1))
                    audit(session, user, "alarm.claim", f"alarm:{n}-{i}")
                    lock_log(
                        session,
                        org_id="org-a",
                        lock_id=f"lock-{rng.randrange(2)}",
                        home_id="home-12",
                        actor="sara",
                        role="staff",
                        action="unlock",
                        outcome="granted",
                    )
                    await session.commit()

        await asyncio.gather(
            *(writer(sessions, n) for n, sessions in enumerate([first, second] * writers))
        )
        total = rounds * writers * 2
        async with first() as session:
            found = await verify_chain(session, "org-a", AUDIT)
            assert (found.valid, found.entries) == (True, total), found
            locks = [await verify_chain(session, "org-a", lock_chain(f"lock-{k}")) for k in (0, 1)]
            assert all(v.valid for v in locks), locks
            assert sum(v.entries for v in locks) == total
            count = await session.scalar(select(func.count()).select_from(LockLogEntry))
            assert count == total


def _alarm(now: datetime, n: int) -> Alarm:
    return Alarm(
        org_id="org-a",
        gateway_id="gw-test-1",
        device_id=f"pendant-{n}",
        device_type="alarm_button",
        home_id="home-12",
        kind="alarm_button",
        priority="critical",
        priority_rank=0,
        state="new",
        event_count=1,
        first_event_id=f"ev-{n}",
        occurred_at=now,
        received_at=now,
        updated_at=now,
    )


# -- the gateway's store -------------------------------------------------------------------
def command_entry(n: int, outcome: str = "done") -> GatewayEntry:
    at = (datetime(2026, 12, 4, 8, 0, tzinfo=UTC) + timedelta(seconds=n)).isoformat()
    return GatewayEntry(at, "lock-1", "unlock", "sara", outcome, "", f"cmd-{n:04}")


def lock_event(n: int, kind: str = "lock_opened", restore: bool = False) -> Event:
    return Event(
        id=f"ev-lock-{n}",
        kind=kind,
        priority=Priority.LOW if kind == "lock_opened" else Priority.NORMAL,
        device_id="lock-1",
        device_type="digital_lock",
        home_id="home-12",
        occurred_at=datetime.now(UTC),
        restore=restore,
        detail={"cause": "keypad"},
    )


async def filled(store: Store) -> None:
    """Six entries: four of commands, two of the lock's own events."""
    for n in range(1, 5):
        await store.append_lock_log(command_entry(n))
        if n == 2:
            assert await store.put(lock_event(n, "lock_jammed"))
            assert not await store.put(lock_event(n, "lock_jammed"))  # held already: no entry
    assert await store.put(lock_event(5))
    smoke = Event(
        id="ev-smoke-1",
        kind="smoke",
        priority=Priority.CRITICAL,
        device_id="smoke-1",
        device_type="smoke",
        home_id="home-12",
        occurred_at=datetime.now(UTC),
    )
    assert await store.put(smoke)  # no lock's: not in the lock log


GATEWAY_TAMPERING = {
    "altered": (["UPDATE lock_log SET actor = 'mallory' WHERE seq = 3"], Problem.ALTERED),
    "deleted": (["DELETE FROM lock_log WHERE seq = 3"], Problem.MISSING),
    "reordered": (
        [
            "UPDATE lock_log SET seq = -3 WHERE seq = 3",
            "UPDATE lock_log SET seq = 3 WHERE seq = 4",
            "UPDATE lock_log SET seq = 4 WHERE seq = -3",
        ],
        Problem.OUT_OF_ORDER,
    ),
}


async def test_the_gateways_lock_log_holds_commands_and_lock_events_in_a_valid_chain(
    store: Store, tmp_path: Path
) -> None:
    await filled(store)
    entries = await store.lock_log()
    assert [(e.seq, e.action, e.outcome, e.reason, e.command_id) for e in entries] == [
        (6, "opened", "reported", "keypad", ""),
        (5, "unlock", "done", "", "cmd-0004"),
        (4, "unlock", "done", "", "cmd-0003"),
        (3, "jammed", "reported", "keypad", ""),
        (2, "unlock", "done", "", "cmd-0002"),
        (1, "unlock", "done", "", "cmd-0001"),
    ]
    assert [e.seq for e in await store.lock_log(2, before=5)] == [4, 3]
    assert [e.seq for e in await store.lock_log(device_id="lock-2")] == []
    assert [c.command_id for c in await store.command_audit()] == [
        "cmd-0004",
        "cmd-0003",
        "cmd-0002",
        "cmd-0001",
    ]
    found = await store.verify_lock_log()
    assert (found.valid, found.entries) == (True, 6)
    assert verify_store_file(tmp_path / "gw.db") == found
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["gateway", "verify-log", "--store", str(tmp_path / "gw.db")]
    )
    assert result.exit_code == 0, result.output
    assert f"lock log: valid: 6 entries, newest 6 {found.head.hash}" in result.output  # type: ignore[union-attr]


@pytest.mark.parametrize("tampering", sorted(GATEWAY_TAMPERING))
async def test_one_gateway_entry_altered_deleted_or_reordered_is_found_and_named(
    store: Store, tmp_path: Path, tampering: str
) -> None:
    await filled(store)
    statements, problem = GATEWAY_TAMPERING[tampering]
    path = tmp_path / "gw.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for statement in statements:
            db.execute(statement)
    found = await store.verify_lock_log()
    assert (found.valid, found.first_broken, found.problem) == (False, 3, problem)
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["gateway", "verify-log", "--store", str(path)]
    )
    assert result.exit_code == 1, result.output
    assert f"lock log: broken at entry 3: {problem.value}: " in result.output


async def test_a_store_from_before_the_lock_log_opens_with_its_command_audit_chained(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(
            "CREATE TABLE command_audit (seq INTEGER PRIMARY KEY, at TEXT NOT NULL,"
            " command_id TEXT NOT NULL, device_id TEXT NOT NULL, action TEXT NOT NULL,"
            " issued_by TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL)"
        )
        for n, outcome in enumerate(("received", "accepted", "failed"), 1):
            db.execute(
                "INSERT INTO command_audit (at, command_id, device_id, action, issued_by,"
                " outcome, reason) VALUES (?, 'cmd-old-1', 'lock-1', 'lock', 'tove', ?, ?)",
                (f"2026-11-30T10:00:0{n}+00:00", outcome, "jammed" if n == 3 else ""),
            )
    store = Store(path)
    await store.open()
    try:
        rows = await store.command_audit()
        assert [(r.outcome, r.reason, r.issued_by) for r in rows] == [
            ("failed", "jammed", "tove"),
            ("accepted", "", "tove"),
            ("received", "", "tove"),
        ]
        assert (await store.verify_lock_log()).entries == 3
        await store.append_lock_log(command_entry(1))
        found = await store.verify_lock_log()
        assert (found.valid, found.entries) == (True, 4)
    finally:
        await store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert "command_audit" not in tables
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
    # Opened again: nothing is chained twice.
    again = Store(path)
    await again.open()
    try:
        assert (await again.verify_lock_log()).entries == 4
    finally:
        await again.close()


async def test_a_store_replaced_under_the_gateway_keeps_its_lock_log_and_says_so(
    store: Store, tmp_path: Path
) -> None:
    await filled(store)
    (tmp_path / "gw.db").unlink()
    await store.check()  # notices, and carries what it still reads into a fresh file
    entries = await store.lock_log()
    assert [(e.seq, e.action, e.outcome) for e in entries[:2]] == [
        (7, "log_restarted", "store_damaged"),
        (6, "opened", "reported"),
    ]
    assert "salvaged_lock_log" in entries[0].detail
    found = await store.verify_lock_log()
    assert (found.valid, found.entries) == (True, 7)
