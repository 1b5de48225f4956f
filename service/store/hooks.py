"""Work that waits for a session's transaction to end: run once it has committed (files
deleted, messages sent) or once it has rolled back (files put back). The unit of work that
owns the session (the API's ``get_session``, :func:`service.store.db.session_scope`) calls
:func:`run_after_commit` or :func:`run_after_rollback`; nothing else commits."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

_COMMIT_KEY = "seal_after_commit"
_ROLLBACK_KEY = "seal_after_rollback"

Hook = Callable[[], None]


def after_commit(session: Session, hook: Hook) -> None:
    """Call ``hook`` once the session's transaction has committed (dropped on a rollback)."""
    session.info.setdefault(_COMMIT_KEY, []).append(hook)


def after_rollback(session: Session, hook: Hook) -> None:
    """Call ``hook`` if the session's transaction rolls back (dropped on a commit)."""
    session.info.setdefault(_ROLLBACK_KEY, []).append(hook)


def run_after_commit(session: Session) -> None:
    """Run the commit hooks in order. The transaction is committed already: a hook that fails
    is logged and the others still run."""
    session.info.pop(_ROLLBACK_KEY, None)
    _run(session.info.pop(_COMMIT_KEY, []), "after commit")


def run_after_rollback(session: Session) -> None:
    """Run the rollback hooks, last registered first (each undoes what came before it)."""
    session.info.pop(_COMMIT_KEY, None)
    _run(list(reversed(session.info.pop(_ROLLBACK_KEY, []))), "after rollback")


def _run(hooks: list[Hook], when: str) -> None:
    for hook in hooks:
        try:
            hook()
        except Exception:
            log.exception("a hook to run %s failed: %r", when, hook)
