"""The gateway's local store: a SQLite database in WAL mode, written by one thread.

The outbox holds every accepted event until the dispatch service has acknowledged
it after its own commit. A row is committed (synchronous=FULL) before ``put``
returns, so an event the pipeline accepted survives a kill or a power cut.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from devices import Event, EventId, Priority, utc_now

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    priority_rank INTEGER NOT NULL,
    accepted_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority_rank, seq);
CREATE TABLE IF NOT EXISTS discovered (
    transport TEXT NOT NULL,
    address TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    messages INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (transport, address)
);
"""


class StoreError(Exception):
    """The local store cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class Pending:
    seq: int
    event: Event


@dataclass(frozen=True, slots=True)
class Discovered:
    transport: str
    address: str
    first_seen: str
    last_seen: str
    messages: int


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._writer: ThreadPoolExecutor | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trygg-store")
        try:
            await self._run(self._open)
        except BaseException:
            self._writer.shutdown(wait=True)
            self._writer = None
            raise

    def _open(self) -> None:
        if self.path.parent != Path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open gateway store {self.path}: {exc}") from exc
        self._db = db

    async def close(self) -> None:
        if self._writer is None:
            return
        await self._run(self._close)
        self._writer.shutdown(wait=True)
        self._writer = None

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._writer is None:
            raise StoreError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    # -- outbox ----------------------------------------------------------------------
    async def put(self, event: Event) -> bool:
        """Commit the event durably. False if an event with that id was already held."""
        body = event.model_dump_json()

        def insert() -> bool:
            cur = self._conn().execute(
                "INSERT OR IGNORE INTO outbox (event_id, priority_rank, accepted_at, body)"
                " VALUES (?, ?, ?, ?)",
                (event.id, event.priority.rank, utc_now().isoformat(), body),
            )
            return cur.rowcount == 1

        return await self._run(insert)

    async def pending(self, limit: int, exclude: Iterable[EventId] = ()) -> list[Pending]:
        """The next events to send: highest priority first, then oldest."""
        skip = list(exclude)

        def select() -> list[Pending]:
            marks = ",".join("?" * len(skip))
            where = f"WHERE event_id NOT IN ({marks})" if skip else ""
            rows = self._conn().execute(
                f"SELECT seq, body FROM outbox {where} ORDER BY priority_rank, seq LIMIT ?",  # noqa: S608
                (*skip, limit),
            )
            return [Pending(seq, Event.model_validate_json(body)) for seq, body in rows]

        return await self._run(select)

    async def ack(self, event_ids: Iterable[EventId]) -> int:
        """Delete acknowledged events; returns how many were still held."""
        ids = [(i,) for i in event_ids]

        def delete() -> int:
            db = self._conn()
            before = db.total_changes
            with db:
                db.executemany("DELETE FROM outbox WHERE event_id = ?", ids)
            return db.total_changes - before

        return await self._run(delete)

    async def depth(self) -> dict[Priority, int]:
        def count() -> dict[Priority, int]:
            rows = self._conn().execute(
                "SELECT priority_rank, COUNT(*) FROM outbox GROUP BY priority_rank"
            )
            by_rank = dict(rows.fetchall())
            return {p: int(by_rank.get(p.rank, 0)) for p in Priority}

        return await self._run(count)

    # -- discovered devices ------------------------------------------------------------
    async def note_discovered(self, transport: str, address: str) -> None:
        now = utc_now().isoformat()

        def upsert() -> None:
            self._conn().execute(
                "INSERT INTO discovered (transport, address, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (transport, address)"
                " DO UPDATE SET last_seen = excluded.last_seen, messages = messages + 1",
                (transport, address[:256], now, now),
            )

        await self._run(upsert)

    async def discovered(self) -> list[Discovered]:
        def select() -> list[Discovered]:
            rows = self._conn().execute(
                "SELECT transport, address, first_seen, last_seen, messages FROM discovered"
                " ORDER BY last_seen DESC"
            )
            return [Discovered(*row) for row in rows]

        return await self._run(select)
