"""an event is known by its organisation, gateway and id, not by its id alone

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 14:00:00

Event ids are a gateway's own, so one organisation's gateway could send an id another's
had already used, and its alarm was taken for a duplicate. The key becomes
(org_id, gateway_id, id); every row is kept (the old key was stricter). The index on
org_id alone goes: the key starts with it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KEY = "events_pkey"  # PostgreSQL's name for the key 0001 made
NEW_KEY = ["org_id", "gateway_id", "id"]
OLD_KEY = ["id"]


def _events(key: list[str]) -> sa.Table:
    """The events table as 0001 made it, with ``key`` as its primary key."""
    return sa.Table(
        "events",
        sa.MetaData(),
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("alarm_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("restore", sa.Boolean(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["alarm_id"], ["alarms.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint(*key, name=KEY),
        sa.Index("ix_events_alarm_id", "alarm_id"),
    )


def _set_key(key: list[str]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot change a primary key in place: the table is rebuilt in its new
        # shape and the rows copied over.
        with op.batch_alter_table("events", recreate="always", copy_from=_events(key)):
            pass
    else:
        op.drop_constraint(KEY, "events", type_="primary")
        op.create_primary_key(KEY, "events", key)


def upgrade() -> None:
    op.drop_index("ix_events_org_id", table_name="events")
    _set_key(NEW_KEY)


def downgrade() -> None:
    # Fails, and changes nothing, if two gateways have sent the same event id since.
    _set_key(OLD_KEY)
    op.create_index("ix_events_org_id", "events", ["org_id"], unique=False)
