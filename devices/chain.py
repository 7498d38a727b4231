"""Hash chains for append-only logs (docs/audit.md): each entry carries the hash of the
one before it, so that altering, removing or reordering an entry breaks the chain where
it was done.

An entry's hash is SHA-256 over a canonical encoding (JSON with sorted keys, no spaces,
ASCII escapes) of its number, the previous entry's hash and its fields; the first entry's
previous hash is ``GENESIS``. The dispatch service (cloud/chain.py) and the gateway
(gateway/store.py) chain their logs with this one definition.

``ChainCheck`` reads a chain in sequence order and names the first entry where it breaks,
and what is wrong there: ``altered`` (an entry's content no longer matches its hash),
``missing`` (entries gone) or ``out_of_order`` (an entry stands where another was
written). It holds one entry at a time, so a log of any length is checked in constant
memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

GENESIS = "0" * 64
VERSION = 1  # of the encoding: a change of it is a new version, never a silent one


def canonical(value: object) -> bytes:
    """The bytes hashed: the same value gives the same bytes on every machine."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def entry_hash(seq: int, prev_hash: str, fields: Mapping[str, object]) -> str:
    body = {"v": VERSION, "seq": seq, "prev": prev_hash, "entry": dict(fields)}
    return hashlib.sha256(canonical(body)).hexdigest()


@dataclass(frozen=True, slots=True)
class Head:
    """The newest entry of a chain: its number and hash (what the next entry follows)."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Link:
    """One stored entry as the check reads it."""

    seq: int
    prev_hash: str
    hash: str
    fields: Mapping[str, object]

    @property
    def sound(self) -> bool:
        """Whether its content still hashes to its stored hash."""
        return entry_hash(self.seq, self.prev_hash, self.fields) == self.hash


def next_link(head: Head | None, fields: Mapping[str, object]) -> Link:
    """The entry that follows ``head`` (None: the first of its chain)."""
    seq = 1 if head is None else head.seq + 1
    prev = GENESIS if head is None else head.hash
    return Link(seq, prev, entry_hash(seq, prev, fields), fields)


class Problem(StrEnum):
    ALTERED = "altered"
    MISSING = "missing"
    OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True, slots=True)
class Verdict:
    valid: bool
    entries: int  # read before the check ended
    head: Head | None  # the newest entry read (the whole chain's, when valid)
    first_broken: int | None = None  # the entry's number
    problem: Problem | None = None
    detail: str | None = None  # what is wrong, in words

    def describe(self) -> str:
        if self.valid:
            newest = f", newest {self.head.seq} {self.head.hash}" if self.head else ""
            return f"valid: {self.entries} entries{newest}"
        assert self.problem is not None
        return f"broken at entry {self.first_broken}: {self.problem.value}: {self.detail}"


def _span(first: int, last: int) -> str:
    return f"entry {first} is" if first == last else f"entries {first}-{last} are"


@dataclass(slots=True)
class _Dangling:
    """A link that points at no entry before it: the rest of the chain is searched for
    the entry it names, to tell a reordering from a removal."""

    link: Link
    expected_seq: int


class ChainCheck:
    """Feed every entry of one chain in sequence order, then read ``verdict()``.

    ``recorded`` is the head as recorded apart from the entries (a chain-head row, or an
    anchor kept elsewhere): without it the newest entries can be removed unnoticed.
    """

    def __init__(self, recorded: Head | None = None) -> None:
        self.recorded = recorded
        self.entries = 0
        self._last: Head | None = None
        self._dangling: _Dangling | None = None
        self._verdict: Verdict | None = None

    @property
    def done(self) -> bool:
        """Decided already: the rest of the chain need not be read."""
        return self._verdict is not None

    def feed(self, link: Link) -> None:
        if self._verdict is not None:
            return
        self.entries += 1
        if self._dangling is not None:
            if link.hash == self._dangling.link.prev_hash:
                moved = self._dangling.link.seq
                self._break(
                    moved,
                    Problem.OUT_OF_ORDER,
                    f"the entry stored as {moved} was written after the one stored as"
                    f" {link.seq}: entries were reordered",
                )
            return
        expected_seq = 1 if self._last is None else self._last.seq + 1
        expected_prev = GENESIS if self._last is None else self._last.hash
        if link.prev_hash != expected_prev:
            self._dangling = _Dangling(link, expected_seq)
            return
        if not link.sound:
            self._break(
                link.seq, Problem.ALTERED, f"entry {link.seq}'s content does not match its hash"
            )
            return
        if link.seq != expected_seq:
            self._break(
                link.seq,
                Problem.ALTERED,
                f"the entry stored as {link.seq} was written as {expected_seq}",
            )
            return
        self._last = Head(link.seq, link.hash)

    def verdict(self) -> Verdict:
        if self._verdict is None and self._dangling is not None:
            self._unresolved(self._dangling)
        if self._verdict is None:
            self._check_head()
        if self._verdict is None:
            self._verdict = Verdict(True, self.entries, self._last)
        return self._verdict

    def _unresolved(self, dangling: _Dangling) -> None:
        """The dangling link's entry is nowhere later in the chain."""
        link, expected = dangling.link, dangling.expected_seq
        if link.seq > expected:
            where = (
                f"the log begins at entry {link.seq}"
                if expected == 1
                else f"entry {link.seq} follows entry {expected - 1}"
            )
            self._break(
                expected, Problem.MISSING, f"{_span(expected, link.seq - 1)} missing: {where}"
            )
        elif not link.sound:
            self._break(
                link.seq,
                Problem.ALTERED,
                f"entry {link.seq}'s link to the entry before it does not match its hash",
            )
        elif expected == 1:
            self._break(
                link.seq,
                Problem.ALTERED,
                f"entry {link.seq} does not begin the chain: entries before it were removed"
                " and the rest renumbered, or it was rewritten",
            )
        else:
            self._break(
                expected - 1,
                Problem.ALTERED,
                f"entry {link.seq} does not follow entry {expected - 1}: entry {expected - 1}"
                " was rewritten with its hash recomputed (or entries between them were"
                " removed and the rest renumbered)",
            )

    def _check_head(self) -> None:
        recorded, last = self.recorded, self._last
        if recorded is None or recorded == last:
            return
        newest = 0 if last is None else last.seq
        if recorded.seq > newest:
            self._break(
                newest + 1,
                Problem.MISSING,
                f"{_span(newest + 1, recorded.seq)} missing at the end: the chain's head"
                f" records {recorded.seq} entries",
            )
        elif recorded.seq < newest:
            self._break(
                recorded.seq + 1,
                Problem.ALTERED,
                f"the chain's head records {recorded.seq} entries, but there are {newest}:"
                " entries were added behind the log's back",
            )
        else:
            self._break(newest, Problem.ALTERED, f"entry {newest} differs from the chain's head")

    def _break(self, seq: int, problem: Problem, detail: str) -> None:
        self._verdict = Verdict(False, self.entries, self._last, seq, problem, detail)
