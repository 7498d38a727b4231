"""The gateway's local store: a SQLite database in WAL mode, written by one thread.

- The outbox holds every accepted event until the dispatch service has acknowledged
  it after its own commit. A row is committed (synchronous=FULL) before ``put``
  returns, so an event the pipeline accepted survives a kill or a power cut.
- The readings buffer holds time-series points until the time-series server accepted
  them. Readings are group-committed in batches.
- The disk budget protects the disk from readings, never from events: when the database
  grows past it, the oldest readings are first thinned to one per device, metric and
  minute, and then dropped oldest first. Every dropped reading is counted by reason.
- A database that SQLite cannot read, at start or while running, is moved aside
  (``*.corrupt-<time>``) and a fresh one is started, rather than crash-looping; what it
  still holds of the outbox and the paired devices is salvaged into the fresh one
  (``salvage.py``). A store file deleted or replaced under the running gateway is noticed
  before the next use (its inode is watched), and what the open connection still holds
  is moved into a fresh file the same way. Either is a ``StoreDamage``: ``on_damaged``
  hears it, with the counts, so that the dispatch service can be told.
- Every failure of SQLite or of the disk is a ``StoreError``: whoever handed the store an
  alarm learns that it was not kept (the Zigbee2MQTT transport then does not ack the
  broker). An event write that fails marks the store faulty (``fault``, shown by
  ``/healthz``) until one succeeds again; ``on_recovered`` then hears what happened.
- The lock log (``lock_log``) holds every signed command the gateway received and what
  became of it, and every event its locks reported (opened, jammed, jam cleared), as a
  hash chain (devices/chain.py, docs/audit.md): each entry carries the hash of the one
  before it, and the meta table records the newest (``lock_log_head``). An entry is
  written in the transaction of what it records (a lock's event: with its outbox row).
- The schema's version is SQLite's ``user_version``; opening a store of an older version
  upgrades it in one transaction (version 1: the command audit table became the lock
  log, its rows chained in their order; version 2: what a discovered device said).
- A full disk: a reserve file (``<store>.reserve``, ``reserve_bytes``) is preallocated at
  open. When an event cannot be written for want of space, the reserve is released and
  the write retried, so an alarm still finds room when readings or anything else on the
  filesystem took the rest. While the reserve is released no reading is written (they are
  dropped and counted as ``disk_full``); it is made again once the filesystem has room.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from devices import Event, EventId, Priority, utc_now
from devices.chain import Verdict

from . import locklog
from .locklog import LOCK_LOG_COLUMNS, LOCK_LOG_HEAD, LockLogEntry
from .salvage import Salvage, salvage_connection, salvage_file

T = TypeVar("T")
log = logging.getLogger("trygg.gateway.store")

# (device_id, metric, value, unix time in ms)
ReadingRow = tuple[str, str, float, int]
# (device_id, digest of the message, unix time in s)
RecentInput = tuple[str, bytes, float]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    priority_rank INTEGER NOT NULL,
    accepted_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority_rank, seq);
CREATE TABLE IF NOT EXISTS recent_input (
    device_id TEXT NOT NULL,
    digest BLOB NOT NULL,
    seen_at REAL NOT NULL,
    PRIMARY KEY (device_id, digest)
);
CREATE INDEX IF NOT EXISTS recent_input_age ON recent_input (seen_at);
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS paired_device (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    paired_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS discovered (
    transport TEXT NOT NULL,
    address TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    messages INTEGER NOT NULL DEFAULT 1,
    said TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (transport, address)
);
CREATE TABLE IF NOT EXISTS command_nonce (
    nonce TEXT PRIMARY KEY,
    keep_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS command_nonce_age ON command_nonce (keep_until);
CREATE TABLE IF NOT EXISTS lock_log (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    device_id TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    command_id TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


SCHEMA_VERSION = 2


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode otherwise)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")  # on a full disk the commit itself may fail
    except BaseException:
        if db.in_transaction:
            with suppress(sqlite3.Error):  # the first error is the one to report
                db.execute("ROLLBACK")
        raise


URGENT, BULK = 0, 1


def _upgrade(db: sqlite3.Connection) -> None:
    """Bring a store of an older schema version up to ``SCHEMA_VERSION``."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version >= SCHEMA_VERSION:
        return
    with _transaction(db):
        exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'command_audit'"
        if version < 1 and db.execute(exists).fetchone() is not None:
            # Version 1: the command audit became the lock log; its rows are chained in
            # their order now (what was done to them before cannot be told).
            rows = db.execute(
                "SELECT at, device_id, action, issued_by, outcome, reason, command_id"
                " FROM command_audit ORDER BY seq"
            ).fetchall()
            for at, device, action, issued_by, outcome, reason, command in rows:
                entry = LockLogEntry(at, device, action, issued_by, outcome, reason, command)
                locklog.append(db, entry)
            db.execute("DROP TABLE command_audit")
        columns = {row[1] for row in db.execute("PRAGMA table_info(discovered)")}
        if version < 2 and "said" not in columns:
            # Version 2: what a discovered device said (its message's fields, no values).
            db.execute("ALTER TABLE discovered ADD COLUMN said TEXT NOT NULL DEFAULT ''")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class _Writer:
    """The store's one thread. Work is taken most urgent first: an alarm's commit never
    queues behind readings batches (one already running finishes first)."""

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue[tuple[int, int, Callable[[], None] | None]] = (
            queue.PriorityQueue()
        )
        self._order = itertools.count()
        self._thread = threading.Thread(target=self._work, name="trygg-store", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            job()

    def submit(self, fn: Callable[[], T], urgency: int) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def job() -> None:
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting task, not lost here
                loop.call_soon_threadsafe(settle, None, exc)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        self._queue.put((urgency, next(self._order), job))
        return future

    def shutdown(self) -> None:
        self._queue.put((BULK + 1, next(self._order), None))
        self._thread.join()


class StoreError(Exception):
    """The local store cannot be opened, read or written."""


@dataclass(slots=True)
class StoreFault:
    """Event writes that failed, from the first failure until one worked again."""

    reason: str
    since: datetime
    failures: int = 1
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoreDamage:
    """The store was found damaged or gone, and a fresh one took its place."""

    reason: str
    moved_to: Path | None
    salvage: Salvage
    at: datetime


REMEMBERED_INPUTS = 20_000
FORGET_EVERY = 1000  # inputs remembered between two prunings (a pruning walks the index)


def _disk_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _damaged(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def verify_store_file(path: Path) -> Verdict:
    """Check the lock log of a store file, read only: the gateway may be running, and a
    store moved aside after damage can be checked as well. StoreError: not readable."""
    if not path.is_file():
        raise StoreError(f"no store file {path}")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from exc
    try:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lock_log'"
        if db.execute(query).fetchone() is None:
            raise StoreError(f"{path} has no lock log (a store the gateway has not upgraded)")
        return locklog.verify(db)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc
    finally:
        db.close()


@dataclass(frozen=True, slots=True)
class CommandAudit:
    """A command's entry of the lock log: the command received, or what became of it."""

    at: str
    command_id: str
    device_id: str
    action: str
    issued_by: str
    outcome: str  # received, accepted, refused, done, failed, expired
    reason: str


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
    said: str = ""  # what its messages held (the fields, never their values)


@dataclass(frozen=True, slots=True)
class StoredReading:
    seq: int
    device_id: str
    metric: str
    value: float
    at_ms: int


class Store:
    def __init__(
        self, path: Path, *, budget_bytes: int | None = None, reserve_bytes: int = 0
    ) -> None:
        self.path = path
        self.budget_bytes = budget_bytes
        self.reserve_bytes = reserve_bytes
        self.reserve_path = path.with_name(path.name + ".reserve")
        self.reserve_released = False
        self.quarantined: Path | None = None
        self.readings_dropped: Counter[str] = Counter()
        self.fault: StoreFault | None = None
        self.on_recovered: Callable[[StoreFault], None] | None = None
        self.damage: list[StoreDamage] = []
        self.on_damaged: Callable[[StoreDamage], None] | None = None
        self._identity: tuple[int, int] | None = None
        self.integrity_checks = 0
        self._unpruned = FORGET_EVERY  # the first write prunes what an earlier run left
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: sqlite3.Connection | None = None
        self._writer: _Writer | None = None
        self._thinned_upto = 0

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._writer = _Writer()
        try:
            await self._run(self._open)
        except BaseException:
            self._writer.shutdown()
            self._writer = None
            raise

    def _open(self) -> None:
        if self.path.parent != Path():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if not self.path.is_file():
                raise StoreError(f"cannot open gateway store {self.path}: {exc}") from exc
            self._replace_damaged(f"unreadable at start: {exc}")
        self._identity = self._file_identity()
        if not self._make_reserve():
            log.warning(
                "no room for the %d byte alarm reserve beside %s; a full disk may refuse alarms",
                self.reserve_bytes,
                self.path,
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            (check,) = db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            db.executescript(_SCHEMA)
            _upgrade(db)
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, why: str) -> Path | None:
        """Rename the store file and its WAL beside it; None if there was no file."""
        stamp = utc_now().strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.name}.{why}-{stamp}")
        moved = None
        if self.path.exists():
            self.path.rename(target)
            moved = target
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():  # a WAL left without its database must not meet a fresh one
                side.rename(target.with_name(target.name + suffix))
        return moved

    def _replace_damaged(self, reason: str) -> None:
        """The store file cannot be read: move it aside, start a fresh one, and carry over
        what can still be read of it."""
        if self._db is not None:
            with suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        target = self._move_aside("corrupt")
        self.quarantined = target
        salvage = (
            salvage_file(target, lambda path: sqlite3.connect(path, isolation_level=None))
            if target is not None
            else Salvage()
        )
        self._fresh(reason, target, salvage)

    def _replace_live(self, reason: str, why: str) -> None:
        """While running, the file was found damaged, deleted or replaced: what the open
        connection still reads (its cache may hold pages the file lost) goes into a fresh
        file; the old file, or one put in its place, is moved aside and not trusted."""
        db = self._conn_unchecked()
        try:
            salvage = salvage_connection(db)
        finally:
            with suppress(sqlite3.Error):
                db.close()
            self._db = None
        target = self._move_aside(why)
        if why == "corrupt":
            self.quarantined = target
        self._fresh(reason, target, salvage)

    def _fresh(self, reason: str, moved_to: Path | None, salvage: Salvage) -> None:
        try:
            db = self._db = self._connect()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open gateway store {self.path}: {exc}") from exc
        self._identity = self._file_identity()
        with _transaction(db):
            db.executemany(
                "INSERT OR IGNORE INTO outbox (event_id, priority_rank, accepted_at, body)"
                " VALUES (?, ?, ?, ?)",
                salvage.outbox,
            )
            db.executemany(
                "INSERT OR IGNORE INTO paired_device (id, body, paired_at) VALUES (?, ?, ?)",
                salvage.paired,
            )
            db.executemany(
                "INSERT OR IGNORE INTO command_nonce (nonce, keep_until) VALUES (?, ?)",
                salvage.nonces,
            )
            # The lock log as it was read, hashes and all: it goes on from its head, and
            # what the damage cost shows as missing (or altered) when it is checked.
            db.executemany(
                f"INSERT OR IGNORE INTO lock_log ({LOCK_LOG_COLUMNS})"  # noqa: S608
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                salvage.lock_log,
            )
            if salvage.lock_log_head is not None:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    (LOCK_LOG_HEAD, salvage.lock_log_head),
                )
            note = f"{reason}; moved to {moved_to}; {salvage.detail()}"
            restarted = LockLogEntry(
                utc_now().isoformat(), "", "log_restarted", "gateway", "store_damaged", "", "", note
            )
            locklog.append(db, restarted)
            self._audit("store_damaged", note)
        damage = StoreDamage(reason, moved_to, salvage, utc_now())
        self.damage.append(damage)
        log.error(
            "gateway store %s: %s; started a fresh one%s and carried over %d unsent events"
            " and %d paired devices (%d unreadable regions or rows)",
            self.path,
            reason,
            f", the old one is kept as {moved_to}" if moved_to else "",
            len(salvage.outbox),
            len(salvage.paired),
            salvage.unreadable,
        )
        if self.on_damaged is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self.on_damaged, damage)

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    async def close(self) -> None:
        if self._writer is None:
            return
        await self._run(self._close)
        self._writer.shutdown()
        self._writer = None

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._identity = None

    async def _run(self, fn: Callable[[], T], urgency: int = URGENT) -> T:
        if self._writer is None:
            raise StoreError("store is not open")
        try:
            return await self._writer.submit(fn, urgency)
        except sqlite3.Error as exc:
            if _damaged(exc) and self._writer is not None:
                # Replaced before anybody tries again: the caller's retry meets a fresh store.
                reason = f"damaged while running: {exc}"
                await self._writer.submit(lambda: self._replace_live(reason, "corrupt"), URGENT)
            raise StoreError(f"gateway store {self.path}: {exc}") from exc

    # -- watching the file ------------------------------------------------------------
    async def check(self, *, integrity: bool = False) -> None:
        """Notice now, not at the next alarm, a store file deleted or replaced under the
        process; with ``integrity``, also read the whole file through a connection of its
        own (no cache), so damage to pages this process has cached is found while they
        can still be saved. Either is healed as it is found."""
        await self._run(self._conn)
        if not integrity:
            return
        # Pages still in the WAL would hide the file's own copy from the check.
        await self._run(lambda: self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)"), BULK)
        problem = await asyncio.to_thread(self._quick_check)
        self.integrity_checks += 1
        if problem is not None:
            reason = f"damaged while running: {problem}"
            await self._run(lambda: self._replace_live(reason, "corrupt"))

    def _quick_check(self) -> str | None:
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        except sqlite3.Error as exc:  # gone (noticed by the next check) or not ours to read
            log.warning("cannot check the gateway store %s: %s", self.path, exc)
            return None
        try:
            (result,) = db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            return str(exc) if _damaged(exc) else None
        finally:
            db.close()
        return None if result == "ok" else f"integrity check failed: {result}"

    # -- the alarm reserve -----------------------------------------------------------
    def _make_reserve(self) -> bool:
        """Preallocate the reserve file; False if the filesystem has no room for it."""
        if self.reserve_bytes <= 0:
            return True
        try:
            if self.reserve_path.stat().st_size >= self.reserve_bytes:
                return True
        except FileNotFoundError:
            pass
        try:
            fs = os.statvfs(self.reserve_path.parent)
            if fs.f_bavail * fs.f_frsize < 2 * self.reserve_bytes:
                return False  # making it would only fill the disk for everyone else
            fd = os.open(self.reserve_path, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot make the alarm reserve %s: %s", self.reserve_path, exc)
            self.reserve_path.unlink(missing_ok=True)
            return False
        if self.reserve_released:
            log.warning("the disk has room again: alarm reserve made, readings are kept again")
        self.reserve_released = False
        return True

    def _release_reserve(self) -> bool:
        """Give the reserve's space to the alarm that found the disk full; False if none."""
        if self.reserve_bytes <= 0 or not self.reserve_path.exists():
            return False
        self.reserve_path.unlink()
        self.reserve_released = True
        log.error(
            "disk full under %s: released the %d byte alarm reserve for events; "
            "readings are dropped until the disk has room",
            self.path,
            self.reserve_bytes,
        )
        return True

    # -- faults ----------------------------------------------------------------------
    def _failed(self, reason: str) -> None:
        if self.fault is None:
            self.fault = StoreFault(reason, utc_now())
            log.error("cannot store events: %s", reason)
        else:
            self.fault.failures += 1
            self.fault.reason = reason

    def _worked(self) -> None:
        fault, self.fault = self.fault, None
        if fault is not None:
            fault.until = utc_now()
            log.warning(
                "events are stored again (%d writes failed since %s: %s)",
                fault.failures,
                fault.since.isoformat(),
                fault.reason,
            )
            if self.on_recovered is not None:
                self.on_recovered(fault)

    def _conn_unchecked(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    def _conn(self) -> sqlite3.Connection:
        """The connection, after making sure the file is still the one it has open."""
        db = self._conn_unchecked()
        now = self._file_identity()
        if now != self._identity:
            gone = "deleted" if now is None else "replaced"
            self._replace_live(f"store file {gone} under the running gateway", "replaced")
            db = self._conn_unchecked()
        return db

    # -- outbox ----------------------------------------------------------------------
    async def put(self, event: Event, source: RecentInput | None = None) -> bool:
        """Commit the event durably. False if an event with that id was already held.

        ``source`` records the input that raised it in the same transaction, so that a
        broker's redelivery of that input after a restart is known for a duplicate; the
        newest ``REMEMBERED_INPUTS`` inputs are kept (far more than a broker has in flight).
        """
        body = event.model_dump_json()
        lock_entry = locklog.lock_event_entry(event)

        def insert() -> bool:
            try:
                added = write()
            except sqlite3.OperationalError as exc:
                if not (_disk_full(exc) and self._release_reserve()):
                    raise
                return write()
            if self.reserve_released:
                self._make_reserve()  # cheap while the disk is still full: one statvfs
            return added

        def write() -> bool:
            db = self._conn()
            with _transaction(db):
                cur = db.execute(
                    "INSERT OR IGNORE INTO outbox (event_id, priority_rank, accepted_at, body)"
                    " VALUES (?, ?, ?, ?)",
                    (event.id, event.priority.rank, utc_now().isoformat(), body),
                )
                if cur.rowcount == 1 and lock_entry is not None:
                    locklog.append(db, lock_entry)
                if source is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO recent_input (device_id, digest, seen_at)"
                        " VALUES (?, ?, ?)",
                        source,
                    )
                    self._remembered(db, 1)
            return cur.rowcount == 1

        try:
            added = await self._run(insert)
        except StoreError as exc:
            self._failed(str(exc))
            raise
        self._worked()
        return added

    def _remembered(self, db: sqlite3.Connection, n: int) -> None:
        """Keep the newest ``REMEMBERED_INPUTS`` (pruned in the caller's transaction)."""
        self._unpruned += n
        if self._unpruned >= FORGET_EVERY:
            self._unpruned = 0
            db.execute(
                "DELETE FROM recent_input WHERE seen_at < (SELECT seen_at FROM recent_input"
                " ORDER BY seen_at DESC LIMIT 1 OFFSET ?)",
                (REMEMBERED_INPUTS,),
            )

    async def recent_inputs(self, limit: int) -> dict[tuple[str, bytes], float]:
        """The newest inputs remembered, however old (a broker resends after any outage)."""

        def select() -> dict[tuple[str, bytes], float]:
            rows = self._conn().execute(
                "SELECT device_id, digest, seen_at FROM recent_input ORDER BY seen_at DESC LIMIT ?",
                (limit,),
            )
            return {(device, bytes(digest)): float(at) for device, digest, at in rows}

        return await self._run(select)

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

    async def ack(
        self, event_ids: Iterable[EventId], refused: Mapping[EventId, str] | None = None
    ) -> int:
        """Delete acknowledged events; returns how many were still held.

        ``refused`` are those of them the dispatch service refused, with its reason: they
        are deleted too (sending them again would be refused again), and each refusal is
        written to the audit log in the same transaction.
        """
        ids = [(i,) for i in event_ids]
        refusals = dict(refused or {})

        def delete() -> int:
            db = self._conn()
            before = db.total_changes
            with _transaction(db):
                db.executemany("DELETE FROM outbox WHERE event_id = ?", ids)
                deleted = db.total_changes - before
                for event_id, reason in refusals.items():
                    self._audit("event_refused", f"{event_id}: {reason}")
            return deleted

        return await self._run(delete)

    async def outbox_stats(self) -> dict[Priority, tuple[int, str | None]]:
        """Per priority: events held, and when the oldest of them was accepted (ISO UTC)."""

        def stats() -> dict[Priority, tuple[int, str | None]]:
            rows = self._conn().execute(
                "SELECT priority_rank, COUNT(*), MIN(accepted_at) FROM outbox"
                " GROUP BY priority_rank"
            )
            by_rank = {rank: (int(n), oldest) for rank, n, oldest in rows}
            return {p: by_rank.get(p.rank, (0, None)) for p in Priority}

        return await self._run(stats)

    async def outbox_ages(self, now: datetime) -> dict[Priority, tuple[int, float]]:
        """Per priority: events held, and the oldest one's age in seconds at ``now``."""
        ages: dict[Priority, tuple[int, float]] = {}
        for priority, (count, oldest) in (await self.outbox_stats()).items():
            age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
            ages[priority] = (count, max(0.0, age))
        return ages

    async def depth(self) -> dict[Priority, int]:
        """Events held per priority."""
        return {p: count for p, (count, _oldest) in (await self.outbox_stats()).items()}

    # -- readings -------------------------------------------------------------------
    async def add_readings(
        self,
        rows: list[ReadingRow],
        inputs: Iterable[RecentInput] = (),
    ) -> None:
        """Commit a batch of readings in one transaction, then apply the disk budget.

        ``inputs`` are the messages the rows came from, remembered in the same transaction
        (as ``put`` does for events) so that a redelivery after a restart is a duplicate."""
        seen = list(inputs)

        def insert() -> None:
            if self.reserve_released and not self._make_reserve():
                self.readings_dropped["disk_full"] += len(rows)
                return
            db = self._conn()
            try:
                with _transaction(db):
                    db.executemany(
                        "INSERT INTO readings (device_id, metric, value, at_ms)"
                        " VALUES (?, ?, ?, ?)",
                        rows,
                    )
                    if seen:
                        db.executemany(
                            "INSERT OR REPLACE INTO recent_input (device_id, digest, seen_at)"
                            " VALUES (?, ?, ?)",
                            seen,
                        )
                        self._remembered(db, len(seen))
            except sqlite3.OperationalError as exc:
                if not _disk_full(exc):
                    raise
                self.readings_dropped["disk_full"] += len(rows)
                return
            if self.budget_bytes is not None:
                self._apply_budget(self.budget_bytes)

        await self._run(insert, BULK)

    async def readings(self, limit: int) -> list[StoredReading]:
        """The oldest buffered readings."""

        def select() -> list[StoredReading]:
            rows = self._conn().execute(
                "SELECT seq, device_id, metric, value, at_ms FROM readings ORDER BY seq LIMIT ?",
                (limit,),
            )
            return [StoredReading(*row) for row in rows]

        return await self._run(select, BULK)

    async def delete_readings(self, first_seq: int, last_seq: int) -> None:
        def delete() -> None:
            db = self._conn()
            with _transaction(db):
                db.execute("DELETE FROM readings WHERE seq BETWEEN ? AND ?", (first_seq, last_seq))

        await self._run(delete, BULK)

    async def readings_count(self) -> int:
        def count() -> int:
            (n,) = self._conn().execute("SELECT COUNT(*) FROM readings").fetchone()
            return int(n)

        return await self._run(count, BULK)

    async def used_bytes(self) -> int:
        """The store's pages in use, in bytes: what the disk budget is measured against."""
        return await self._run(self._used_bytes, BULK)

    def _used_bytes(self) -> int:
        db = self._conn()
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (free,) = db.execute("PRAGMA freelist_count").fetchone()
        (size,) = db.execute("PRAGMA page_size").fetchone()
        return int((pages - free) * size)

    def _apply_budget(self, budget: int) -> None:
        db = self._conn()
        while self._used_bytes() > budget:
            (lo, hi) = db.execute("SELECT MIN(seq), MAX(seq) FROM readings").fetchone()
            if lo is None:
                log.warning("gateway store over its budget with events alone; events are kept")
                return
            if self._thinned_upto < hi:
                # Thin the older half to one reading per device, metric and minute.
                cut = lo + (hi - lo) // 2
                if cut > self._thinned_upto:
                    with _transaction(db):
                        cur = db.execute(
                            "DELETE FROM readings WHERE seq > ? AND seq <= ? AND seq NOT IN ("
                            " SELECT MIN(seq) FROM readings WHERE seq > ? AND seq <= ?"
                            " GROUP BY device_id, metric, at_ms / 60000)",
                            (self._thinned_upto, cut, self._thinned_upto, cut),
                        )
                    self._thinned_upto = cut
                    self.readings_dropped["downsampled"] += cur.rowcount
                    if cur.rowcount > 0:
                        continue
            # Then drop the oldest tenth.
            (total,) = db.execute("SELECT COUNT(*) FROM readings").fetchone()
            chunk = max(1, total // 10)
            with _transaction(db):
                cur = db.execute(
                    "DELETE FROM readings WHERE seq IN"
                    " (SELECT seq FROM readings ORDER BY seq LIMIT ?)",
                    (chunk,),
                )
            self.readings_dropped["over_budget"] += cur.rowcount

    # -- audit log ------------------------------------------------------------------------
    def _audit(self, action: str, detail: str) -> None:
        self._conn().execute(
            "INSERT INTO audit (at, action, detail) VALUES (?, ?, ?)",
            (utc_now().isoformat(), action, detail[:2000]),
        )

    async def audit(self, action: str, detail: str = "") -> None:
        await self._run(lambda: self._audit(action, detail))

    async def audit_log(self, limit: int = 100) -> list[tuple[str, str, str]]:
        def select() -> list[tuple[str, str, str]]:
            rows = self._conn().execute(
                "SELECT at, action, detail FROM audit ORDER BY seq DESC LIMIT ?", (limit,)
            )
            return [(str(a), str(b), str(c)) for a, b, c in rows]

        return await self._run(select)

    # -- signed commands: the nonces seen, and what became of every command ----------------
    async def claim_nonce(self, nonce: str, keep_until: float) -> bool:
        """Keep a command's nonce until ``keep_until`` (unix time); False when it was seen
        before. Committed before the command is acted on, so a replay after a restart is
        refused too. Nonces whose time has passed are pruned on the way."""

        def insert() -> bool:
            db = self._conn()
            with _transaction(db):
                db.execute("DELETE FROM command_nonce WHERE keep_until < ?", (time.time(),))
                cur = db.execute(
                    "INSERT OR IGNORE INTO command_nonce (nonce, keep_until) VALUES (?, ?)",
                    (nonce, keep_until),
                )
            return cur.rowcount == 1

        return await self._run(insert)

    async def nonces(self) -> int:
        def count() -> int:
            return int(self._conn().execute("SELECT count(*) FROM command_nonce").fetchone()[0])

        return await self._run(count)

    async def append_lock_log(self, entry: LockLogEntry) -> LockLogEntry:
        """Write one entry to the lock log; the entry as written (its number and hash)."""

        def insert() -> LockLogEntry:
            db = self._conn()
            with _transaction(db):
                return locklog.append(db, entry)

        return await self._run(insert)

    async def lock_log(
        self, limit: int = 100, *, before: int | None = None, device_id: str | None = None
    ) -> list[LockLogEntry]:
        """The newest entries first; ``before`` (an entry's number) pages back."""
        where = ["seq < ?"]
        args: list[object] = [before if before is not None else 2**63 - 1]
        if device_id is not None:
            where.append("device_id = ?")
            args.append(device_id)

        def select() -> list[LockLogEntry]:
            rows = self._conn().execute(
                f"SELECT {LOCK_LOG_COLUMNS} FROM lock_log WHERE {' AND '.join(where)}"  # noqa: S608
                " ORDER BY seq DESC LIMIT ?",
                (*args, limit),
            )
            return [locklog.entry_of_row(row)[0] for row in rows]

        return await self._run(select)

    async def verify_lock_log(self) -> Verdict:
        """Check the lock log's whole chain (read by the store's thread, between writes)."""
        return await self._run(lambda: locklog.verify(self._conn()), BULK)

    async def command_audit(self, limit: int = 100) -> list[CommandAudit]:
        """The lock log's command entries, the newest first."""

        def select() -> list[CommandAudit]:
            rows = self._conn().execute(
                "SELECT at, command_id, device_id, action, actor, outcome, reason"
                " FROM lock_log WHERE command_id != '' ORDER BY seq DESC LIMIT ?",
                (limit,),
            )
            return [CommandAudit(*(str(v) for v in row)) for row in rows]

        return await self._run(select)

    # -- small values kept across restarts (the inventory's revision) --------------------
    async def meta(self, key: str) -> str | None:
        def select() -> str | None:
            row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(select)

    async def set_meta(self, key: str, value: str) -> None:
        def upsert() -> None:
            self._conn().execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

        await self._run(upsert)

    # -- the dispatch service's configuration (gateway/remoteconfig.py) -----------------
    async def save_configuration(self, version: int, body: str, unpair: list[str]) -> None:
        """Keep a configuration the dispatch service sent, and forget the local pairings
        it replaces, in one transaction: either all of it is kept or none."""

        def write() -> None:
            db = self._conn()
            with _transaction(db):
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('configuration', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (body,),
                )
                for device_id in unpair:
                    db.execute("DELETE FROM paired_device WHERE id = ?", (device_id,))
                    self._audit("device_unpaired", f"{device_id} (configured by dispatch)")
                self._audit("configuration_applied", f"version {version}")

        await self._run(write)

    # -- discovered devices ------------------------------------------------------------
    async def note_discovered(
        self, transport: str, address: str, *, messages: int = 1, said: str = ""
    ) -> None:
        now = utc_now().isoformat()

        def upsert() -> None:
            self._conn().execute(
                "INSERT INTO discovered"
                " (transport, address, first_seen, last_seen, messages, said)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (transport, address)"
                " DO UPDATE SET last_seen = excluded.last_seen,"
                " messages = messages + excluded.messages,"
                " said = CASE WHEN excluded.said = '' THEN said ELSE excluded.said END",
                (transport, address[:256], now, now, messages, said[:200]),
            )

        await self._run(upsert)

    async def discovered(self) -> list[Discovered]:
        def select() -> list[Discovered]:
            rows = self._conn().execute(
                "SELECT transport, address, first_seen, last_seen, messages, said"
                " FROM discovered ORDER BY last_seen DESC"
            )
            return [Discovered(*row) for row in rows]

        return await self._run(select)

    # -- devices paired by a technician ------------------------------------------------
    async def paired_devices(self) -> list[tuple[str, str]]:
        """(id, JSON body) of every paired device, in pairing order."""

        def select() -> list[tuple[str, str]]:
            rows = self._conn().execute("SELECT id, body FROM paired_device ORDER BY paired_at")
            return [(str(a), str(b)) for a, b in rows]

        return await self._run(select)

    async def pair(self, device_id: str, body: str) -> None:
        def insert() -> None:
            db = self._conn()
            with _transaction(db):
                db.execute(
                    "INSERT INTO paired_device (id, body, paired_at) VALUES (?, ?, ?)",
                    (device_id, body, utc_now().isoformat()),
                )
                self._audit("device_paired", device_id)

        await self._run(insert)

    async def unpair(self, device_id: str) -> bool:
        def delete() -> bool:
            db = self._conn()
            with _transaction(db):
                cur = db.execute("DELETE FROM paired_device WHERE id = ?", (device_id,))
                if cur.rowcount:
                    self._audit("device_unpaired", device_id)
            return cur.rowcount == 1

        return await self._run(delete)

    async def forget_discovered(self, transport: str, address: str) -> None:
        def delete() -> None:
            self._conn().execute(
                "DELETE FROM discovered WHERE transport = ? AND address = ?", (transport, address)
            )

        await self._run(delete)
