"""Each gateway's configuration as the dispatch service keeps it, version by version

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 20:30:00

gateway_configurations: the devices, homes and heartbeat interval the centre sets for a
gateway (devices/wire.py GatewayConfiguration), one row per version, who made it and
when. The newest version is the one the gateway should have; its heartbeat says which it
has (GatewayHealth.config_version), and the dispatch service sends the newest again
until it does (cloud/configuration.py). devices: each one's address and where its gateway
has it from (its file, a pairing on the gateway, or the configuration here), as the
inventory says.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("address", sa.String(256)))
        batch_op.add_column(sa.Column("origin", sa.String(16)))
    op.create_table(
        "gateway_configurations",
        sa.Column("gateway_id", sa.String(64), sa.ForeignKey("gateways.id"), primary_key=True),
        sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("org_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_configurations")
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("origin")
        batch_op.drop_column("address")
