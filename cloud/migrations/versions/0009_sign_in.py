"""sign-in: sessions that can be revoked, disabled users, a second factor, and a sign-in
throttle every replica shares

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 09:00:00

A token names its session, and a session can be ended (signing out, signing out
everywhere, a user disabled) before the token expires. A user may have a TOTP secret
(kept encrypted) with its last used time step (a code works once) and hashed recovery
codes; an organisation may ask a second factor of everyone. Failed sign-ins are counted
in the database, so a second replica is no second chance.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.add_column(
            sa.Column(
                "require_second_factor", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("totp_secret", sa.String(length=300)))
        batch_op.add_column(sa.Column("totp_enabled_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("totp_last_step", sa.BigInteger()))
        batch_op.add_column(
            sa.Column("recovery_codes", sa.JSON(), nullable=False, server_default="[]")
        )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("second_factor", sa.Boolean(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="sessions_user_id_fkey"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("sessions_of_user", "sessions", ["user_id"], unique=False)
    op.create_table(
        "sign_in_throttle",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("sign_in_throttle")
    op.drop_index("sessions_of_user", table_name="sessions")
    op.drop_table("sessions")
    with op.batch_alter_table("users") as batch_op:
        for column in (
            "recovery_codes",
            "totp_last_step",
            "totp_enabled_at",
            "totp_secret",
            "disabled_at",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("organisations") as batch_op:
        batch_op.drop_column("require_second_factor")
