"""Per-tenant quotas: a tenant's own limits beside the settings defaults, and each document's
size in bytes (what it counts against the ``stored_bytes`` quota), filled in for the
documents already stored. And the audit log of admin actions (``audit_events``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(64), nullable=True),
    )
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("quotas", sa.JSON(), nullable=True))
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("size_bytes", sa.Integer(), nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE documents SET size_bytes = octet_length(title) + octet_length(text)")
    else:
        op.execute(
            "UPDATE documents SET size_bytes = "
            "length(CAST(title AS BLOB)) + length(CAST(text AS BLOB))"
        )


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("size_bytes")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("quotas")
    op.drop_table("audit_events")
