"""Home rules per resident

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 19:20:00

residents.rules: the resident's own home rules (cloud/homerules.py ResidentRules), set in
the dispatch service and delivered to the home's gateways as configuration.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("residents") as batch_op:
        batch_op.add_column(sa.Column("rules", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("residents") as batch_op:
        batch_op.drop_column("rules")
