"""the trusted link: gateways' broker credentials and inventories, signed commands

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 18:00:00

A gateway gets its broker password's hash and the revision of the last device inventory
it reported; a device gets what that inventory says of it; every signed command sent
down to a device is kept with where it has got to.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gateways") as batch_op:
        batch_op.add_column(sa.Column("broker_password_hash", sa.String(length=200)))
        batch_op.add_column(sa.Column("inventory_revision", sa.BigInteger()))
        batch_op.add_column(sa.Column("inventory_at", sa.DateTime(timezone=True)))
    with op.batch_alter_table("devices") as batch_op:
        batch_op.add_column(sa.Column("transport", sa.String(length=32)))
        batch_op.add_column(sa.Column("firmware", sa.String(length=64)))
        batch_op.add_column(sa.Column("actions", sa.JSON()))
        batch_op.add_column(sa.Column("reported_at", sa.DateTime(timezone=True)))
    op.create_table(
        "commands",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("issued_by", sa.String(length=100), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64)),
        sa.Column("detail", sa.String(length=500)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signed", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("nonce"),
    )
    op.create_index(
        "commands_by_gateway", "commands", ["org_id", "gateway_id", "issued_at"], unique=False
    )
    op.create_index("commands_open", "commands", ["state", "expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("commands_open", table_name="commands")
    op.drop_index("commands_by_gateway", table_name="commands")
    op.drop_table("commands")
    with op.batch_alter_table("devices") as batch_op:
        batch_op.drop_column("reported_at")
        batch_op.drop_column("actions")
        batch_op.drop_column("firmware")
        batch_op.drop_column("transport")
    with op.batch_alter_table("gateways") as batch_op:
        batch_op.drop_column("inventory_at")
        batch_op.drop_column("inventory_revision")
        batch_op.drop_column("broker_password_hash")
