"""Devices that report straight to the dispatch service (the native device API)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 19:00:00

devices.credential_sha256: the SHA-256 of a direct device's credential (an LTE GPS watch
with no gateway in the home; cloud/direct.py). Unique: a credential names one device.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("credential_sha256", sa.String(64), nullable=True))
        batch_op.create_index("ix_devices_credential", ["credential_sha256"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_index("ix_devices_credential")
        batch_op.drop_column("credential_sha256")
