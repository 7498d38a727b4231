"""Reading what can still be read from a damaged or lost store: the outbox rows (alarms
not yet acked), the paired devices, the nonces of signed commands (so that a fresh
store refuses their replay too) and the lock log, with its recorded head (so that the
fresh store's log goes on from it, and shows any entry the damage cost as missing).
Used on a database SQLite refuses, and on the still-open connection to a store file that
was deleted or replaced under the gateway.

A damaged page makes a query fail where it starts; the scan then steps over it one row
at a time, so one bad page costs the rows on it and not the rest of the table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from devices import Event

from .locklog import LOCK_LOG_HEAD

BATCH = 256
# Consecutive failed steps after which the rest of a table is given up.
GIVE_UP_AFTER = 48

# (event_id, priority_rank, accepted_at, body)
OutboxRow = tuple[str, int, str, str]
# (id, body, paired_at)
PairedRow = tuple[str, str, str]
# (nonce, keep_until)
NonceRow = tuple[str, float]
# The lock log's columns, as gateway/store.py LOCK_LOG_COLUMNS names them.
LockLogRow = tuple[int, str, str, str, str, str, str, str, str, str, str]


@dataclass
class Salvage:
    outbox: list[OutboxRow] = field(default_factory=list)
    paired: list[PairedRow] = field(default_factory=list)
    nonces: list[NonceRow] = field(default_factory=list)
    lock_log: list[LockLogRow] = field(default_factory=list)
    lock_log_head: str | None = None
    unreadable: int = 0  # damaged regions stepped over, rows that did not parse

    def detail(self) -> dict[str, int]:
        return {
            "salvaged_events": len(self.outbox),
            "salvaged_devices": len(self.paired),
            "salvaged_lock_log": len(self.lock_log),
            "unreadable": self.unreadable,
        }


def _scan(db: sqlite3.Connection, sql: str, salvage: Salvage) -> Iterator[tuple[object, ...]]:
    """Rows of ``sql`` (``... WHERE rowid > ? ORDER BY rowid LIMIT ?``, rowid first),
    stepping over what cannot be read."""
    after, misses, step = 0, 0, 1
    while misses < GIVE_UP_AFTER:
        limit = BATCH if misses == 0 else 1
        try:
            rows = db.execute(sql, (after, limit)).fetchall()
        except sqlite3.DatabaseError:
            if misses == 0:
                salvage.unreadable += 1  # one damaged region, however long
            misses += 1
            after += step
            step = min(step * 2, 1 << 20)
            continue
        if not rows:
            return
        misses, step = 0, 1
        for row in rows:
            after = int(row[0])
            yield row


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    try:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return db.execute(query, (name,)).fetchone() is not None
    except sqlite3.DatabaseError:
        return True  # the schema itself is damaged: try, and step over what fails


def salvage_connection(db: sqlite3.Connection) -> Salvage:
    salvage = Salvage()
    outbox = (
        "SELECT seq, event_id, priority_rank, accepted_at, body FROM outbox"
        " WHERE seq > ? ORDER BY seq LIMIT ?"
    )
    for _seq, event_id, rank, accepted, body in _scan(db, outbox, salvage):
        try:
            Event.model_validate_json(str(body))
        except (ValidationError, ValueError):
            salvage.unreadable += 1
            continue
        salvage.outbox.append((str(event_id), int(rank), str(accepted), str(body)))  # type: ignore[call-overload]
    paired = (
        "SELECT rowid, id, body, paired_at FROM paired_device"
        " WHERE rowid > ? ORDER BY rowid LIMIT ?"
    )
    for _rowid, device_id, body, paired_at in _scan(db, paired, salvage):
        salvage.paired.append((str(device_id), str(body), str(paired_at)))
    if _has_table(db, "command_nonce"):  # not in a store from before signed commands
        nonces = (
            "SELECT rowid, nonce, keep_until FROM command_nonce"
            " WHERE rowid > ? ORDER BY rowid LIMIT ?"
        )
        for _rowid, nonce, keep_until in _scan(db, nonces, salvage):
            salvage.nonces.append((str(nonce), float(keep_until)))  # type: ignore[arg-type]
    if _has_table(db, "lock_log"):  # not in a store from before the lock log
        lock_log = (
            "SELECT seq, at, device_id, action, actor, outcome, reason, command_id, detail,"
            " prev_hash, hash FROM lock_log WHERE seq > ? ORDER BY seq LIMIT ?"
        )
        for row in _scan(db, lock_log, salvage):
            seq, *text = row
            salvage.lock_log.append((int(seq), *(str(v) for v in text)))  # type: ignore[call-overload]
        salvage.lock_log_head = _meta(db, LOCK_LOG_HEAD)
    return salvage


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else str(row[0])


def salvage_file(path: Path, connect: Callable[[Path], sqlite3.Connection]) -> Salvage:
    """What a quarantined database still holds; an empty salvage if it cannot be opened."""
    try:
        db = connect(path)
    except sqlite3.Error:
        return Salvage(unreadable=1)
    try:
        return salvage_connection(db)
    except sqlite3.Error:
        return Salvage(unreadable=1)
    finally:
        db.close()
