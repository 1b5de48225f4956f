"""Hybrid memory as the API shows it: what a reply drew on, and a new document with the
volatile ones it superseded (the rest of the API's models: :mod:`service.schemas`)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.schemas import DocumentDetail
from service.store.models import MemoryMode


class MemoryDocument(BaseModel):
    id: str = Field(description="The document's id, as `POST /v1/documents` returned it.")
    title: str


class MemoryUsed(BaseModel):
    mode: MemoryMode = Field(
        description="`hybrid`: the adapter with the documents below in its prompt; "
        "`weights`: the adapter alone (closed book)."
    )
    documents: list[MemoryDocument] = Field(
        description="The documents whose chunks were in the prompt, best match first (empty: "
        "none matched, or `weights`)."
    )


class DocumentCreated(DocumentDetail):
    superseded: list[str] = Field(
        default_factory=list,
        description="The volatile documents of the same title that this one replaced (deleted, "
        "gone from memory).",
    )
