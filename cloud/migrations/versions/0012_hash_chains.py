"""hash chains: the audit log chained per organisation, a lock log chained per lock

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 09:00:00

Every audit entry gets its number in its organisation's chain, the hash of the entry
before it and its own hash (cloud/chain.py, docs/audit.md); the entries already there are
chained now, oldest first, so tampering with them before this upgrade cannot be told. The
lock log is new: every command to a lock and every event of one, a chain per lock. The
head of each chain (its newest entry's number and hash) is kept in log_chains.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

from cloud.chain import AUDIT, audit_fields
from devices.chain import Head, next_link

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _chain_existing_audit() -> None:
    audit = sa.table(
        "audit_log",
        sa.column("id", sa.Integer()),
        sa.column("org_id", sa.String()),
        sa.column("at", _UTC),
        sa.column("actor", sa.String()),
        sa.column("role", sa.String()),
        sa.column("action", sa.String()),
        sa.column("target", sa.String()),
        sa.column("detail", sa.JSON()),
        sa.column("seq", sa.BigInteger()),
        sa.column("prev_hash", sa.String()),
        sa.column("hash", sa.String()),
    )
    heads = sa.table(
        "log_chains",
        sa.column("org_id", sa.String()),
        sa.column("chain", sa.String()),
        sa.column("seq", sa.BigInteger()),
        sa.column("hash", sa.String()),
        sa.column("updated_at", _UTC),
    )
    conn = op.get_bind()
    last: dict[str, Head] = {}
    rows = conn.execute(sa.select(audit).order_by(audit.c.org_id, audit.c.id))
    for row in rows.mappings().all():
        entry = SimpleNamespace(**{**row, "at": _aware(row["at"]), "detail": row["detail"] or {}})
        fields = audit_fields(entry)
        link = next_link(last.get(row["org_id"]), fields)
        conn.execute(
            audit.update()
            .where(audit.c.id == row["id"])
            .values(seq=link.seq, prev_hash=link.prev_hash, hash=link.hash)
        )
        last[row["org_id"]] = Head(link.seq, link.hash)
    now = datetime.now(UTC)
    for org_id, head in last.items():
        conn.execute(
            heads.insert().values(
                org_id=org_id, chain=AUDIT, seq=head.seq, hash=head.hash, updated_at=now
            )
        )


def upgrade() -> None:
    op.create_table(
        "log_chains",
        sa.Column("org_id", sa.String(64), sa.ForeignKey("organisations.id"), primary_key=True),
        sa.Column("chain", sa.String(160), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("updated_at", _UTC, nullable=False),
    )
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger()))
        batch_op.add_column(sa.Column("prev_hash", sa.String(64)))
        batch_op.add_column(sa.Column("hash", sa.String(64)))
    _chain_existing_audit()
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(64), nullable=False)
        batch_op.create_unique_constraint("audit_chain_seq", ["org_id", "seq"])
    op.create_table(
        "lock_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("org_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("lock_id", sa.String(128), nullable=False),
        sa.Column("home_id", sa.String(128), nullable=False),
        sa.Column("at", _UTC, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("command_id", sa.String(64)),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("org_id", "lock_id", "seq", name="lock_log_chain_seq"),
    )


def downgrade() -> None:
    op.drop_table("lock_log")
    with op.batch_alter_table("audit_log") as batch_op:
        batch_op.drop_constraint("audit_chain_seq", type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
    op.drop_table("log_chains")
