"""home-care staff: planned visits, consent per service, doors opened and locked again

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 12:30:00

A visit (a home, a staff member or a team, a start and an end) makes the home's door
openable for that staff member around it; a consent per resident and service (locks,
camera checks, positions) switches a service on; a door opened by staff is followed
until it is locked again. The organisation says whether staff may take their team's
alarms themselves, the margin around a visit, and the grace before door_left_open. An
alarm remembers when its assignee accepted it; a lock, its last confirmed state.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.add_column(
            sa.Column("staff_may_take", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("visit_margin_s", sa.Integer(), nullable=False, server_default="900")
        )
        batch_op.add_column(
            sa.Column("door_grace_s", sa.Integer(), nullable=False, server_default="120")
        )
    with op.batch_alter_table("alarms") as batch_op:
        batch_op.add_column(sa.Column("accepted_at", _UTC))
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("lock_state", sa.String(16)))
        batch_op.add_column(sa.Column("lock_state_at", _UTC))
    op.create_table(
        "visits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("home_id", sa.String(128), nullable=False),
        sa.Column("resident_id", sa.String(128)),
        sa.Column("staff", sa.String(100)),
        sa.Column("team_id", sa.Integer()),
        sa.Column("starts_at", _UTC, nullable=False),
        sa.Column("ends_at", _UTC, nullable=False),
        sa.Column("note", sa.String(500), nullable=False, server_default=""),
        sa.Column("external_id", sa.String(100)),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
        sa.Column("cancelled_at", _UTC),
        sa.UniqueConstraint("org_id", "external_id", name="visits_external_id_per_org"),
    )
    op.create_index("visits_by_staff", "visits", ["org_id", "staff", "starts_at"])
    op.create_index("visits_by_time", "visits", ["org_id", "starts_at"])
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("resident_id", sa.String(128), nullable=False),
        sa.Column("service", sa.String(16), nullable=False),
        sa.Column("given_by", sa.String(20), nullable=False),
        sa.Column("given_by_name", sa.String(200)),
        sa.Column("recorded_by", sa.String(100), nullable=False),
        sa.Column("recorded_at", _UTC, nullable=False),
        sa.Column("valid_from", _UTC, nullable=False),
        sa.Column("withdrawn_at", _UTC),
        sa.Column("withdrawn_by", sa.String(100)),
    )
    op.create_index("consents_of_resident", "consents", ["org_id", "resident_id", "service"])
    op.create_table(
        "door_openings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("lock_id", sa.String(128), nullable=False),
        sa.Column("home_id", sa.String(128), nullable=False),
        sa.Column("opened_by", sa.String(100), nullable=False),
        sa.Column("opened_at", _UTC, nullable=False),
        sa.Column("command_id", sa.String(64), nullable=False),
        sa.Column("alarm_id", sa.Integer()),
        sa.Column("visit_id", sa.Integer()),
        sa.Column("relock_command_id", sa.String(64)),
        sa.Column("relock_at", _UTC),
        sa.Column("left_open_alarm_id", sa.Integer()),
        sa.Column("closed_at", _UTC),
        sa.Column("closed_how", sa.String(20)),
    )
    op.create_index("door_openings_open", "door_openings", ["org_id", "closed_at"])


def downgrade() -> None:
    op.drop_index("door_openings_open", table_name="door_openings")
    op.drop_table("door_openings")
    op.drop_index("consents_of_resident", table_name="consents")
    op.drop_table("consents")
    op.drop_index("visits_by_time", table_name="visits")
    op.drop_index("visits_by_staff", table_name="visits")
    op.drop_table("visits")
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("lock_state_at")
        batch_op.drop_column("lock_state")
    with op.batch_alter_table("alarms") as batch_op:
        batch_op.drop_column("accepted_at")
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.drop_column("door_grace_s")
        batch_op.drop_column("visit_margin_s")
        batch_op.drop_column("staff_may_take")
