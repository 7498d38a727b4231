"""The gateway's lock log (docs/audit.md): every signed command received and what became
of it, and every event its locks reported, as a hash chain (devices/chain.py). Functions
on the store's connection, called by its one writer thread (gateway/store.py) inside
the transaction of what they record; and the check, on any connection to a store file.
The meta table records the chain's head (``LOCK_LOG_HEAD``: "<seq> <hash>")."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace

from devices import LOCK_EVENT_ACTIONS, Event, lock_event_cause
from devices.chain import ChainCheck, Head, Link, Verdict, next_link

LOCK_LOG_HEAD = "lock_log_head"
LOCK_LOG_COLUMNS = (
    "seq, at, device_id, action, actor, outcome, reason, command_id, detail, prev_hash, hash"
)


@dataclass(frozen=True, slots=True)
class LockLogEntry:
    """One entry of the gateway's lock log: a command received or what became of it, or
    an event a lock reported. ``seq`` and ``hash`` are the store's, once written."""

    at: str
    device_id: str
    action: str  # unlock, lock; opened, jammed, jam_cleared; log_restarted
    actor: str  # who issued the command; "lock" for what a lock reported
    outcome: str  # received, accepted, refused, done, failed, expired; reported
    reason: str = ""
    command_id: str = ""
    detail: str = ""
    seq: int = 0
    hash: str = ""

    def fields(self) -> dict[str, object]:
        """What its hash covers (with its number and the previous entry's hash)."""
        return {
            "log": "gateway_lock",
            "at": self.at,
            "device": self.device_id,
            "action": self.action,
            "actor": self.actor,
            "outcome": self.outcome,
            "reason": self.reason,
            "command": self.command_id,
            "detail": self.detail,
        }

    def bounded(self) -> LockLogEntry:
        """As stored: every field cut to its length (a sender's text is not trusted)."""
        return replace(
            self,
            device_id=self.device_id[:128],
            action=self.action[:32],
            actor=self.actor[:100],
            outcome=self.outcome[:32],
            reason=self.reason[:64],
            command_id=self.command_id[:64],
            detail=self.detail[:2000],
        )


def entry_of_row(row: tuple[object, ...]) -> tuple[LockLogEntry, str]:
    """A lock_log row (LOCK_LOG_COLUMNS) as an entry, and its stored previous hash."""
    seq, at, device, action, actor, outcome, reason, command, detail, prev, digest = row
    entry = LockLogEntry(
        str(at),
        str(device),
        str(action),
        str(actor),
        str(outcome),
        str(reason),
        str(command),
        str(detail),
        int(seq),  # type: ignore[call-overload]
        str(digest),
    )
    return entry, str(prev)


def head_of(value: str | None) -> Head | None:
    """The recorded head, from its meta value "<seq> <hash>"."""
    if value is None:
        return None
    seq, _, digest = value.partition(" ")
    return Head(int(seq), digest) if seq.isdigit() and digest else None


def verify(db: sqlite3.Connection) -> Verdict:
    """Check a store's lock log whole, oldest first, against its recorded head."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (LOCK_LOG_HEAD,)).fetchone()
    check = ChainCheck(head_of(None if row is None else str(row[0])))
    rows = db.execute(f"SELECT {LOCK_LOG_COLUMNS} FROM lock_log ORDER BY seq")  # noqa: S608
    for stored in rows:
        entry, prev = entry_of_row(stored)
        check.feed(Link(entry.seq, prev, entry.hash, entry.fields()))
        if check.done:
            break
    return check.verdict()


def append(db: sqlite3.Connection, entry: LockLogEntry) -> LockLogEntry:
    """Append to the chain in the caller's transaction; the entry as written.

    It follows the recorded head, so that an entry removed from the end still shows as
    missing; or the newest row, if that is newer (a head set back must not stop the log)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (LOCK_LOG_HEAD,)).fetchone()
    head = head_of(None if row is None else str(row[0]))
    newest = db.execute("SELECT seq, hash FROM lock_log ORDER BY seq DESC LIMIT 1").fetchone()
    if newest is not None and (head is None or int(newest[0]) > head.seq):
        head = Head(int(newest[0]), str(newest[1]))
    bounded = entry.bounded()
    link = next_link(head, bounded.fields())
    written = replace(bounded, seq=link.seq, hash=link.hash)
    db.execute(
        f"INSERT INTO lock_log ({LOCK_LOG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        (
            written.seq,
            written.at,
            written.device_id,
            written.action,
            written.actor,
            written.outcome,
            written.reason,
            written.command_id,
            written.detail,
            link.prev_hash,
            written.hash,
        ),
    )
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (LOCK_LOG_HEAD, f"{written.seq} {written.hash}"),
    )
    return written


def lock_event_entry(event: Event) -> LockLogEntry | None:
    """The lock-log entry of a lock's own event; None for any other event."""
    action = LOCK_EVENT_ACTIONS.get((event.kind, event.restore))
    if action is None:
        return None
    detail = json.dumps({"event_id": event.id, "detail": event.detail}, sort_keys=True)
    if len(detail) > 2000:
        detail = json.dumps({"event_id": event.id})
    return LockLogEntry(
        at=event.occurred_at.isoformat(),
        device_id=event.device_id,
        action=action,
        actor="lock",
        outcome="reported",
        reason=lock_event_cause(event.detail) or "",
        detail=detail,
    )
