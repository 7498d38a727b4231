"""Planned visits from a planning system's export: `trygg cloud import-visits` takes the
file whole or not at all, names the line of every problem, and updates what it imported
before instead of doubling it. The parser takes any text without crashing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cloud import CloudSettings
from cloud.admin import admin_session, ensure_team, ensure_user
from cloud.db import Visit
from cloud.security import Role
from cloud.visits import VisitFileError, parse_visits

from .conftest import seed_cloud
from .test_admin_cli import run

pytestmark = pytest.mark.integration

STOCKHOLM = ZoneInfo("Europe/Stockholm")
GOOD = (
    "Besök;Hem;Datum;Från;Till;Personal;Arbetslag;Brukare;Anteckning\n"
    "v-1001;home-12;2026-12-03;08:00;08:30;sara;;res-12;Morgonhjälp\n"
    "v-1002;home-12;2026-12-03;23:30;00:15;;Natt;;Tillsyn\n"
    "v-1003;home-12;;2026-12-04T12:00+01:00;2026-12-04T12:45+01:00;sara;;;\n"
)


@pytest.fixture
async def env(tmp_path: Path) -> dict[str, str]:
    database = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    settings = CloudSettings(database_url=database, environment="development")
    await seed_cloud(settings)
    async with admin_session(settings) as session:
        await ensure_team(session, "org-a", "Natt")
        await ensure_user(session, "org-a", "sara", "sara-pass", Role.STAFF)
        await session.commit()
    return {"TRYGG_DATABASE_URL": database, "TRYGG_ENVIRONMENT": "development"}


async def visits(env: dict[str, str]) -> list[Visit]:
    settings = CloudSettings(database_url=env["TRYGG_DATABASE_URL"], environment="development")
    async with admin_session(settings) as session:
        rows = await session.execute(select(Visit).order_by(Visit.external_id))
        return list(rows.scalars())


async def test_a_planning_export_is_imported_and_imported_again_without_doubles(
    env: dict[str, str], tmp_path: Path
) -> None:
    export = tmp_path / "visits.csv"
    export.write_text("\ufeff" + GOOD)  # a BOM, as spreadsheets write it
    code, out = await run(env, "cloud", "import-visits", "org-a", str(export), "--dry-run")
    assert (code, out.strip()) == (
        0,
        "3 visits: 3 new, 0 changed, 0 unchanged (dry run: nothing written)",
    )
    assert await visits(env) == []
    code, out = await run(env, "cloud", "import-visits", "org-a", str(export))
    assert (code, out.strip()) == (0, "3 visits: 3 new, 0 changed, 0 unchanged")
    morning, night, noon = await visits(env)
    assert (morning.staff, morning.resident_id, morning.note) == ("sara", "res-12", "Morgonhjälp")
    assert morning.starts_at == datetime(2026, 12, 3, 8, 0, tzinfo=STOCKHOLM)
    # A night visit past midnight ends the next day; a team's visit names nobody yet.
    assert night.ends_at == datetime(2026, 12, 4, 0, 15, tzinfo=STOCKHOLM)
    assert (night.staff, night.team_id is not None) == (None, True)
    assert noon.ends_at == datetime(2026, 12, 4, 12, 45, tzinfo=STOCKHOLM)
    # The planner moves one visit and cancels another: imported again, updated.
    changed = export.read_text().replace("08:30", "08:45")
    changed = changed.replace("Anteckning\n", "Anteckning;Inställd\n")
    changed = changed.replace("Tillsyn\n", "Tillsyn;ja\n")
    export.write_text(changed)
    code, out = await run(env, "cloud", "import-visits", "org-a", str(export))
    assert (code, out.strip()) == (0, "3 visits: 0 new, 2 changed, 1 unchanged"), out
    morning, night, _ = await visits(env)
    assert morning.ends_at == datetime(2026, 12, 3, 8, 45, tzinfo=STOCKHOLM)
    assert night.cancelled_at is not None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the file is empty"),
        ("visit_id,home_id,start,end,staff\n", "the file has a header but no visits"),
        ("visit_id,home_id,start,staff\nv1,home-12,08:00,sara\n", "line 1: no end column"),
        ("visit_id,home_id,start,end\nv1,home-12,08:00,09:00\n", "line 1: needs a staff or a team"),
        ("visit_id,home_id,start,end,staff,colour\n", "line 1: unknown columns: colour"),
        (
            "visit_id,home_id,date,start,end,staff\nv1,home-12,2026-12-03,8 am,09:00,sara\n",
            "line 2: start '8 am' / end '09:00': want HH:MM",
        ),
        (
            "visit_id,home_id,date,start,end,staff\nv1,home-12,2026-12-03,08:00,09:00,sara\n"
            "v1,home-12,2026-12-03,10:00,11:00,sara\n",
            "line 3: visit_id v1 is on line 2",
        ),
        (
            "visit_id,home_id,date,start,end,staff\n,home-12,2026-12-03,08:00,09:00,sara\n",
            "line 2: external_id is empty",
        ),
        (
            "visit_id,home_id,start,end,staff\nv1,home-12,2026-12-03T09:00,2026-12-03T08:00,sara\n",
            "line 2: the end is not after the start",
        ),
        (
            "visit_id,home_id,start,end,staff,cancelled\n"
            "v1,home-12,2026-12-03T08:00,2026-12-03T09:00,sara,maybe\n",
            "line 2: cancelled 'maybe': want yes or no",
        ),
        (
            "visit_id,home_id,date,start,end,staff\nv1,home-12,3/12/2026,08:00,09:00,sara\n",
            "line 2: Invalid isoformat string",
        ),
    ],
)
def test_a_bad_file_names_its_line(text: str, problem: str) -> None:
    with pytest.raises(VisitFileError) as caught:
        parse_visits(text, "Europe/Stockholm")
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


async def test_rows_that_do_not_fit_the_organisation_are_named_and_nothing_is_written(
    env: dict[str, str], tmp_path: Path
) -> None:
    export = tmp_path / "visits.csv"
    export.write_text(
        "visit_id;home_id;date;start;end;staff;team;resident_id\n"
        "v-1;home-12;2026-12-03;08:00;08:30;sara;;\n"
        "v-2;home-99;2026-12-03;09:00;09:30;sara;;\n"
        "v-3;home-12;2026-12-03;09:00;09:30;anna;;\n"
        "v-4;home-12;2026-12-03;09:00;09:30;;Dag;\n"
        "v-5;home-12;2026-12-03;09:00;09:30;sara;;res-1\n"
    )
    code, out = await run(env, "cloud", "import-visits", "org-a", str(export))
    assert code == 1
    assert f"{export}: line 3: no home home-99" in out
    assert f"{export}: line 4: no staff member anna" in out  # an operator is not staff
    assert f"{export}: line 5: no team 'Dag'" in out
    assert f"{export}: line 6: no resident res-1 at home-12" in out
    assert await visits(env) == []
    export.write_bytes(b"visit_id;home_id\n\xff\xfe")
    code, out = await run(env, "cloud", "import-visits", "org-a", str(export))
    assert code == 2 and "not UTF-8" in out
    code, out = await run(env, "cloud", "import-visits", "org-a", str(tmp_path / "none.csv"))
    assert code == 2 and "No such file" in out
    export.write_text(GOOD)
    code, out = await run(env, "cloud", "import-visits", "org-x", str(export))
    assert code == 1 and "no organisation org-x" in out


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list('visit_id,home_;start\tend\n0123456789:-T+ "ja')),
        max_size=300,
    )
)
def test_any_text_is_visits_or_a_named_problem(text: str) -> None:
    header = "visit_id,home_id,date,start,end,staff\n"
    for candidate in (text, header + text):
        try:
            rows = parse_visits(candidate, "Europe/Stockholm")
        except VisitFileError as exc:
            assert exc.problems and all(isinstance(p, str) for p in exc.problems)
        else:
            assert all(r.ends_at > r.starts_at for r in rows)
