"""Folders deleted with the rows that point to them, in step with the transaction.

A folder is moved aside at once (renamed beside itself: atomic, on its own file system), so
what a response reports is what happened; it is deleted once the transaction has committed,
when nothing points to it any more, and put back if the transaction rolls back."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

from sqlalchemy.orm import Session

from service.store.hooks import after_commit, after_rollback

log = logging.getLogger(__name__)


def remove_after_commit(session: Session, folder: Path) -> bool:
    """Delete ``folder`` with the session's transaction; False when it could not be moved
    aside (it stays where it is, and nothing of it is deleted)."""
    aside = folder.with_name(f".{folder.name}.deleting-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(folder, aside)
    except OSError:
        log.exception("could not move %s aside to delete it", folder)
        return False

    def delete() -> None:
        try:
            shutil.rmtree(aside)
        except OSError:
            log.exception("could not delete %s (was %s)", aside, folder)

    def restore() -> None:
        os.rename(aside, folder)

    after_commit(session, delete)
    after_rollback(session, restore)
    return True
