"""Few-shot skills: skills, their examples, versions and configurations (their self-edits);
skill jobs (one open per skill), the skill version a completion used, and the domain of a
teacher version (``documents``, or ``skills`` for the teacher of configurations).

On SQLite, adding a foreign key copies ``jobs`` and ``completions`` to new tables (batch mode;
``env.py`` keeps the rows that refer to them).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN_SKILL_JOB = "kind = 'skill' AND status IN ('queued', 'running')"


def upgrade() -> None:
    op.create_table(
        "skills",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_skills_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_skills")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_skills_tenant_id_name")),
    )
    op.create_index(op.f("ix_skills_tenant_id"), "skills", ["tenant_id"], unique=False)
    op.create_table(
        "skill_examples",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("skill_id", sa.String(length=36), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["skill_id"],
            ["skills.id"],
            name=op.f("fk_skill_examples_skill_id_skills"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_skill_examples_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_skill_examples")),
        sa.UniqueConstraint(
            "skill_id", "content_hash", name=op.f("uq_skill_examples_skill_id_content_hash")
        ),
    )
    op.create_index(
        op.f("ix_skill_examples_skill_id"), "skill_examples", ["skill_id"], unique=False
    )
    op.create_index(
        op.f("ix_skill_examples_tenant_id"), "skill_examples", ["tenant_id"], unique=False
    )
    op.create_table(
        "skill_versions",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("skill_id", sa.String(length=36), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("artifact_uri", sa.String(length=1000), nullable=True),
        sa.Column("checksum", sa.String(length=128), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_skill_versions_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["skill_versions.id"],
            name=op.f("fk_skill_versions_parent_id_skill_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["skill_id"],
            ["skills.id"],
            name=op.f("fk_skill_versions_skill_id_skills"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_skill_versions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_skill_versions")),
        sa.UniqueConstraint("skill_id", "number", name=op.f("uq_skill_versions_skill_id_number")),
    )
    op.create_index(
        op.f("ix_skill_versions_skill_id"), "skill_versions", ["skill_id"], unique=False
    )
    op.create_index(
        op.f("ix_skill_versions_tenant_id"), "skill_versions", ["tenant_id"], unique=False
    )
    op.create_index(
        "uq_skill_versions_skill_id_active",
        "skill_versions",
        ["skill_id"],
        unique=True,
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "skill_configs",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("skill_id", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("teacher_version_id", sa.String(length=36), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_skill_configs_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["skill_id"],
            ["skills.id"],
            name=op.f("fk_skill_configs_skill_id_skills"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["teacher_version_id"],
            ["teacher_versions.id"],
            name=op.f("fk_skill_configs_teacher_version_id_teacher_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_skill_configs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_skill_configs")),
    )
    op.create_index(op.f("ix_skill_configs_skill_id"), "skill_configs", ["skill_id"], unique=False)
    op.create_index(
        op.f("ix_skill_configs_tenant_id"), "skill_configs", ["tenant_id"], unique=False
    )

    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("skill_id", sa.String(length=36), nullable=True))
        batch.create_foreign_key(
            op.f("fk_jobs_skill_id_skills"), "skills", ["skill_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index(op.f("ix_jobs_skill_id"), ["skill_id"], unique=False)
        batch.create_index(
            "uq_jobs_skill_id_open_skill",
            ["skill_id"],
            unique=True,
            postgresql_where=sa.text(_OPEN_SKILL_JOB),
            sqlite_where=sa.text(_OPEN_SKILL_JOB),
        )
    with op.batch_alter_table("completions") as batch:
        batch.add_column(sa.Column("skill_version_id", sa.String(length=36), nullable=True))
        batch.create_foreign_key(
            op.f("fk_completions_skill_version_id_skill_versions"),
            "skill_versions",
            ["skill_version_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.add_column(
        "teacher_versions",
        sa.Column("domain", sa.String(length=16), nullable=False, server_default="documents"),
    )


def downgrade() -> None:
    with op.batch_alter_table("teacher_versions") as batch:
        batch.drop_column("domain")
    with op.batch_alter_table("completions") as batch:
        batch.drop_constraint(
            op.f("fk_completions_skill_version_id_skill_versions"), type_="foreignkey"
        )
        batch.drop_column("skill_version_id")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("uq_jobs_skill_id_open_skill")
        batch.drop_index(op.f("ix_jobs_skill_id"))
        batch.drop_constraint(op.f("fk_jobs_skill_id_skills"), type_="foreignkey")
        batch.drop_column("skill_id")
    op.drop_table("skill_configs")
    op.drop_table("skill_versions")
    op.drop_table("skill_examples")
    op.drop_table("skills")
