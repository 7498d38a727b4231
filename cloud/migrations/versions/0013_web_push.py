"""Web Push subscriptions of home-care staff

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 10:00:00

One row per staff member's phone or browser: the push service's endpoint (unique: a
browser has one per subscription) and the browser's keys the push is encrypted to, when
it was made, when a push last got through and how many failed since.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", name="push_subscriptions_user_id_fkey"),
            nullable=False,
        ),
        sa.Column("endpoint", sa.String(1000), nullable=False),
        sa.Column("p256dh", sa.String(100), nullable=False),
        sa.Column("auth", sa.String(40), nullable=False),
        sa.Column("label", sa.String(100), nullable=False, server_default=""),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("last_sent_at", _UTC),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.UniqueConstraint("endpoint", name="push_subscriptions_endpoint_key"),
    )
    op.create_index("push_subscriptions_of_user", "push_subscriptions", ["user_id"])


def downgrade() -> None:
    op.drop_index("push_subscriptions_of_user", table_name="push_subscriptions")
    op.drop_table("push_subscriptions")
