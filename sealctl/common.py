"""What the ``seal`` command groups share: logging, the store-backed runtime of the teacher
commands, and the turning of a domain's refusal into a usage error."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from service.settings import Settings

if TYPE_CHECKING:
    from worker.runtime import Runtime


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@contextmanager
def usage_errors(*kinds: type[Exception], prefix: str = "") -> Iterator[None]:
    """Turn the named exceptions (a refusal of the domain code: bad data, a journal of another
    run) into a usage error that says what is wrong, exit status 2, no traceback."""
    try:
        yield
    except kinds as exc:
        raise typer.BadParameter(f"{prefix}{exc}") from exc


def refuse_external(settings: Settings, what: str) -> None:
    from worker.config import ExternalTeacher, refuse_external_teacher

    with usage_errors(ExternalTeacher):
        refuse_external_teacher(settings, what)


def shared_runtime(settings: Settings, *, bundled: bool = False) -> Runtime:
    """A worker runtime on the configured store, migrated first (the teacher commands record
    teacher versions in it). With ``bundled``, a store with no shared teacher gets the shipped
    one as version 1, as the service's own start does (ReST-EM starts from it); distillation
    does not, as it starts from whichever version it is told."""
    from migrations import upgrade
    from service.store.db import make_engine, make_sessionmaker
    from worker.bundled import register_bundled_teacher
    from worker.runtime import Runtime

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    sessions = make_sessionmaker(make_engine(settings.resolved_database_url), write=True)
    if bundled:
        register_bundled_teacher(settings, sessions)
    return Runtime(settings, sessions)
