"""Hybrid memory: documents' chunks with the store's full-text search over them, a tenant's
``memory`` setting (``hybrid`` for every tenant), ``volatile`` documents; the documents
already stored are chunked and indexed here.

PostgreSQL: ``memory_chunks.tsv``, a generated ``tsvector`` (title weighted A, text B, the
``english`` configuration) with a GIN index. SQLite: the FTS5 table ``memory_chunks_fts``
(porter stemming) over ``memory_chunks`` as its external content, kept current by triggers (a
document's deletion cascades to its chunks, and the trigger takes them out of the index).
Neither is in the models (``service.store.models.is_modelled``).

Going down deletes the volatile documents: before this revision nothing answers from memory,
and an update would train them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.domain.memory import chunk_text

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_UP = [
    "CREATE VIRTUAL TABLE memory_chunks_fts USING fts5(title, text, content='memory_chunks', "
    "content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER memory_chunks_fts_insert AFTER INSERT ON memory_chunks BEGIN "
    "INSERT INTO memory_chunks_fts (rowid, title, text) VALUES (new.id, new.title, new.text); "
    "END",
    "CREATE TRIGGER memory_chunks_fts_delete AFTER DELETE ON memory_chunks BEGIN "
    "INSERT INTO memory_chunks_fts (memory_chunks_fts, rowid, title, text) "
    "VALUES ('delete', old.id, old.title, old.text); END",
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS memory_chunks_fts_delete",
    "DROP TRIGGER IF EXISTS memory_chunks_fts_insert",
    "DROP TABLE IF EXISTS memory_chunks_fts",
]
_PG_UP = [
    "ALTER TABLE memory_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', title), 'A') || "
    "setweight(to_tsvector('english', text), 'B')) STORED",
    "CREATE INDEX ix_memory_chunks_tsv ON memory_chunks USING gin (tsv)",
]


def upgrade() -> None:
    op.add_column(
        "tenants",
        sa.Column("memory", sa.String(length=16), nullable=False, server_default="hybrid"),
    )
    op.add_column(
        "documents",
        sa.Column("volatile", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    chunks = op.create_table(
        "memory_chunks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("document_id", sa.String(length=36), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_memory_chunks_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_memory_chunks_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_chunks")),
    )
    op.create_index(
        op.f("ix_memory_chunks_document_id"), "memory_chunks", ["document_id"], unique=False
    )
    op.create_index(
        op.f("ix_memory_chunks_tenant_id"), "memory_chunks", ["tenant_id"], unique=False
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in _SQLITE_UP if sqlite else _PG_UP:
        op.execute(statement)
    # the documents already stored, in the memory as new ones would be
    documents = op.get_bind().execute(
        sa.text("SELECT id, tenant_id, title, text FROM documents ORDER BY created_at, id")
    )
    rows = [
        {"tenant_id": t, "document_id": d, "ordinal": i, "title": title, "text": chunk}
        for d, t, title, text in documents
        for i, chunk in enumerate(chunk_text(text))
    ]
    if rows:
        op.bulk_insert(chunks, rows)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for statement in _SQLITE_DOWN:
            op.execute(statement)
    op.drop_index(op.f("ix_memory_chunks_tenant_id"), table_name="memory_chunks")
    op.drop_index(op.f("ix_memory_chunks_document_id"), table_name="memory_chunks")
    op.drop_table("memory_chunks")  # with its GIN index on PostgreSQL
    op.execute("DELETE FROM documents WHERE volatile")
    op.drop_column("documents", "volatile")
    op.drop_column("tenants", "memory")
