"""Teacher versions get the constraints of the other version histories: one number per owner
(a tenant, or the shared teacher, in each domain) and at most one active version per owner,
and the time a version was promoted.

Existing rows are made to fit first: where an owner has several active versions, the one the
service used (the highest number) stays active and the others are retired; where two versions
of an owner share a number, the later one gets the owner's next number.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OWNER = "coalesce(tenant_id, '')"


def _fit_existing_rows() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, tenant_id, domain, number, status FROM teacher_versions "
            "ORDER BY created_at, id"
        )
    ).all()
    highest: dict[tuple[str, str], int] = {}
    for _, tenant_id, domain, number, _ in rows:
        owner = (tenant_id or "", domain)
        highest[owner] = max(highest.get(owner, 0), number)
    taken: dict[tuple[str, str], set[int]] = {}
    active: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for id_, tenant_id, domain, number, status in rows:
        owner = (tenant_id or "", domain)
        if number in taken.setdefault(owner, set()):
            highest[owner] += 1
            number = highest[owner]
            bind.execute(
                sa.text("UPDATE teacher_versions SET number = :number WHERE id = :id"),
                {"number": number, "id": id_},
            )
        taken[owner].add(number)
        if status == "active":
            active.setdefault(owner, []).append((number, id_))
    for versions in active.values():
        for _, id_ in sorted(versions)[:-1]:
            bind.execute(
                sa.text("UPDATE teacher_versions SET status = 'retired' WHERE id = :id"),
                {"id": id_},
            )


def upgrade() -> None:
    with op.batch_alter_table("teacher_versions") as batch:
        batch.add_column(sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True))
    _fit_existing_rows()
    op.create_index(
        "uq_teacher_versions_owner_number",
        "teacher_versions",
        [sa.text(OWNER), "domain", "number"],
        unique=True,
    )
    op.create_index(
        "uq_teacher_versions_owner_active",
        "teacher_versions",
        [sa.text(OWNER), "domain"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )


def downgrade() -> None:
    op.drop_index("uq_teacher_versions_owner_active", "teacher_versions")
    op.drop_index("uq_teacher_versions_owner_number", "teacher_versions")
    with op.batch_alter_table("teacher_versions") as batch:
        batch.drop_column("promoted_at")
