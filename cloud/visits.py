"""Planned visits: made through the API, or imported from a planning system's export.

The file is what municipal planning systems (Lifecare, Procapita, TES, Phoniro Care) can
export as a report: CSV with a header row and one row per visit, comma, semicolon or tab
separated (Swedish spreadsheets write semicolons), UTF-8 (with or without a BOM). Columns,
by header name (Swedish or English, any case, any order):

    visit_id / besök       the planning system's id for the visit        required
    home_id / hem          the home's id in Trygg                         required
    date / datum           YYYY-MM-DD (with start and end as HH:MM)
    start / från           HH:MM local time, or an ISO date-time          required
    end / till             HH:MM local time, or an ISO date-time          required
    staff / personal       the staff member's username                     staff or team
    team / arbetslag       the team's name
    resident_id / brukare  the resident's id in Trygg                     optional
    note / anteckning      a short note (no care details: it is not the journal)
    cancelled / inställd   yes/no, ja/nej, 1/0                             optional

Local times are the organisation's time zone; an end at or before the start with times
only is the next day (a night visit 23:30-00:15). The import is all or nothing: every
row is checked (the home, resident, staff member and team exist in the organisation)
before any is written, and each problem names its line. A visit imported again (the same
visit_id) is updated, not doubled.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .db import Home, Resident, Team, User, Visit
from .security import Role

MAX_ROWS = 50_000
MAX_VISIT = timedelta(hours=24)

COLUMNS: dict[str, tuple[str, ...]] = {
    "external_id": ("visit_id", "id", "besök", "besok", "besöks-id", "besoksid"),
    "home_id": ("home_id", "home", "hem", "hem_id"),
    "date": ("date", "datum", "dag"),
    "start": ("start", "starts_at", "från", "fran", "starttid"),
    "end": ("end", "ends_at", "till", "sluttid"),
    "staff": ("staff", "personal", "medarbetare", "user"),
    "team": ("team", "arbetslag", "grupp"),
    "resident_id": ("resident_id", "resident", "brukare", "brukar_id"),
    "note": ("note", "anteckning", "notering"),
    "cancelled": ("cancelled", "canceled", "inställd", "installd", "avbokad"),
}
REQUIRED = ("external_id", "home_id", "start", "end")
_YES = {"yes", "y", "ja", "j", "1", "true", "x"}
_NO = {"", "no", "n", "nej", "0", "false"}


class VisitFileError(Exception):
    """What is wrong with the file, every problem with its line number."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class VisitRow:
    line: int
    external_id: str
    home_id: str
    starts_at: datetime
    ends_at: datetime
    staff: str | None
    team: str | None
    resident_id: str | None
    note: str
    cancelled: bool


def _header(names: list[str]) -> dict[str, int]:
    """Our field -> its column; raises VisitFileError on a missing or unknown header."""
    wanted = {alias: name for name, aliases in COLUMNS.items() for alias in aliases}
    found: dict[str, int] = {}
    unknown = []
    for index, raw in enumerate(names):
        key = raw.strip().lower().replace(" ", "_")
        if key in wanted:
            found[wanted[key]] = index
        elif key:
            unknown.append(raw.strip())
    problems = [f"line 1: no {name} column" for name in REQUIRED if name not in found]
    if unknown:
        problems.append(f"line 1: unknown columns: {', '.join(unknown)}")
    if "staff" not in found and "team" not in found:
        problems.append("line 1: needs a staff or a team column")
    if problems:
        raise VisitFileError(problems)
    return found


def _when(text: str, day: date | None, zone: ZoneInfo) -> datetime:
    text = text.strip()
    if day is not None and len(text) <= 5:
        return datetime.combine(day, time.fromisoformat(text.zfill(5)), zone)
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _row(line: int, cells: list[str], columns: dict[str, int], zone: ZoneInfo) -> VisitRow:
    def cell(name: str) -> str:
        index = columns.get(name)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    problems = [f"{name} is empty" for name in REQUIRED if not cell(name)]
    if problems:
        raise ValueError("; ".join(problems))
    if len(cell("external_id")) > 100 or len(cell("home_id")) > 128:
        raise ValueError("visit_id is at most 100 characters, home_id 128")
    day = date.fromisoformat(cell("date")) if cell("date") else None
    try:
        starts = _when(cell("start"), day, zone)
        ends = _when(cell("end"), day, zone)
    except ValueError:
        raise ValueError(
            f"start {cell('start')!r} / end {cell('end')!r}: want HH:MM with a date column, "
            "or ISO date-times (2026-12-03T08:00)"
        ) from None
    if ends <= starts and day is not None and len(cell("end")) <= 5:
        ends += timedelta(days=1)  # a night visit past midnight
    if ends <= starts:
        raise ValueError("the end is not after the start")
    if ends - starts > MAX_VISIT:
        raise ValueError("a visit is at most 24 hours")
    cancelled = cell("cancelled").lower()
    if cancelled not in _YES | _NO:
        raise ValueError(f"cancelled {cell('cancelled')!r}: want yes or no")
    if not cell("staff") and not cell("team"):
        raise ValueError("name the staff member or the team")
    if len(cell("note")) > 500:
        raise ValueError("the note is at most 500 characters")
    return VisitRow(
        line=line,
        external_id=cell("external_id"),
        home_id=cell("home_id"),
        starts_at=starts,
        ends_at=ends,
        staff=cell("staff") or None,
        team=cell("team") or None,
        resident_id=cell("resident_id") or None,
        note=cell("note"),
        cancelled=cancelled in _YES,
    )


def parse_visits(text: str, time_zone: str) -> list[VisitRow]:
    """The file's rows, or VisitFileError naming the line of every problem."""
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise VisitFileError(["the file is empty"])
    # The header says the separator: whichever of ; , tab it holds most (a sniffer
    # guesses from the data too, and a note with commas fools it).
    first = text.split("\n", 1)[0]
    delimiter = max(";,\t", key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    zone = ZoneInfo(time_zone)
    try:
        columns = _header(next(reader))
        rows: list[VisitRow] = []
        problems: list[str] = []
        seen: dict[str, int] = {}
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(rows) + len(problems) >= MAX_ROWS:
                raise VisitFileError([f"line {line}: more than {MAX_ROWS} visits in one file"])
            try:
                row = _row(line, cells, columns, zone)
            except ValueError as exc:
                problems.append(f"line {line}: {exc}")
                continue
            if row.external_id in seen:
                problems.append(
                    f"line {line}: visit_id {row.external_id} is on line {seen[row.external_id]}"
                )
                continue
            seen[row.external_id] = line
            rows.append(row)
    except csv.Error as exc:
        raise VisitFileError([f"line {reader.line_num}: not CSV: {exc}"]) from None
    if problems:
        raise VisitFileError(problems)
    if not rows:
        raise VisitFileError(["the file has a header but no visits"])
    return rows


@dataclass(frozen=True, slots=True)
class Imported:
    created: int
    updated: int
    unchanged: int


async def import_visits(
    session: AsyncSession, org_id: str, rows: list[VisitRow], by: str, now: datetime
) -> Imported:
    """Check every row against the organisation, then write them all (the caller
    commits). Raises VisitFileError naming the lines that do not fit."""
    homes = set((await session.execute(select(Home.id).where(Home.org_id == org_id))).scalars())
    residents = {
        rid: home
        for rid, home in await session.execute(
            select(Resident.id, Resident.home_id).where(Resident.org_id == org_id)
        )
    }
    staff = set(
        (
            await session.execute(
                select(User.username).where(User.org_id == org_id, User.role == Role.STAFF.value)
            )
        ).scalars()
    )
    teams = {
        name: tid
        for tid, name in await session.execute(
            select(Team.id, Team.name).where(Team.org_id == org_id)
        )
    }
    problems = []
    for row in rows:
        if row.home_id not in homes:
            problems.append(f"line {row.line}: no home {row.home_id}")
        if row.resident_id is not None and residents.get(row.resident_id) != row.home_id:
            problems.append(f"line {row.line}: no resident {row.resident_id} at {row.home_id}")
        if row.staff is not None and row.staff not in staff:
            problems.append(f"line {row.line}: no staff member {row.staff}")
        if row.team is not None and row.team not in teams:
            problems.append(f"line {row.line}: no team {row.team!r}")
    if problems:
        raise VisitFileError(problems)
    existing = {
        v.external_id: v
        for v in (
            await session.execute(
                select(Visit).where(
                    Visit.org_id == org_id,
                    Visit.external_id.in_([r.external_id for r in rows]),
                )
            )
        ).scalars()
    }
    created = updated = unchanged = 0
    for row in rows:
        values = {
            "home_id": row.home_id,
            "resident_id": row.resident_id,
            "staff": row.staff,
            "team_id": teams[row.team] if row.team is not None else None,
            "starts_at": row.starts_at,
            "ends_at": row.ends_at,
            "note": row.note,
        }
        visit = existing.get(row.external_id)
        if visit is None:
            session.add(
                Visit(
                    org_id=org_id,
                    external_id=row.external_id,
                    created_by=by,
                    created_at=now,
                    updated_at=now,
                    cancelled_at=now if row.cancelled else None,
                    **values,
                )
            )
            created += 1
            continue
        same = all(getattr(visit, k) == v for k, v in values.items()) and (
            (visit.cancelled_at is not None) == row.cancelled
        )
        if same:
            unchanged += 1
            continue
        for key, value in values.items():
            setattr(visit, key, value)
        if row.cancelled != (visit.cancelled_at is not None):
            visit.cancelled_at = now if row.cancelled else None
        visit.updated_at = now
        updated += 1
    return Imported(created, updated, unchanged)
