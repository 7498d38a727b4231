"""What a discovered device's transport describes it as

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 02:00:00

discovered_devices: the model a device's transport names (Zigbee2MQTT's bridge/devices)
and the device type its exposes suggest (devices/codecs/exposes.py), so the technician
console offers that type when the device is paired (devices/wire.py DiscoveredDevice).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("discovered_devices") as batch_op:
        batch_op.add_column(sa.Column("model", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("suggested_type", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("discovered_devices") as batch_op:
        batch_op.drop_column("suggested_type")
        batch_op.drop_column("model")
