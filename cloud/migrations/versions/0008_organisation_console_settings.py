"""an organisation's answer target and time zone; a resident's birth date and language

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 08:00:00

An alarm centre answers against its own target (60 s unless it says otherwise, as in
EN 50134-7 and the TSA's figures) and reads times in its own zone, not in UTC. Existing
organisations get the defaults. The operator's resident card shows the resident's age
and the language to speak; both may be unknown.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.add_column(
            sa.Column("answer_target_s", sa.Integer(), nullable=False, server_default="60")
        )
        batch_op.add_column(
            sa.Column(
                "time_zone", sa.String(length=64), nullable=False, server_default="Europe/Stockholm"
            )
        )

    with op.batch_alter_table("residents") as batch_op:
        batch_op.add_column(sa.Column("born", sa.Date()))
        batch_op.add_column(sa.Column("language", sa.String(length=35)))


def downgrade() -> None:
    with op.batch_alter_table("residents") as batch_op:
        batch_op.drop_column("language")
        batch_op.drop_column("born")
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.drop_column("time_zone")
        batch_op.drop_column("answer_target_s")
