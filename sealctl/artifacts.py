"""``seal push-artifacts``: the versions a store recorded in the local adapter folder before
``SEAL_ARTIFACT_URL`` named object storage, uploaded there, and their rows pointed at the
objects, so that workers and APIs on other machines can read them. Each version's weights are
checked against its checksum first; its folder stays where it is (delete it once every
process runs with the object store). Run it again at will: what is uploaded already is left."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from seal.lora import load_adapter
from service.artifacts import SCHEME, artifacts
from service.settings import Settings
from service.store.db import session_scope
from service.store.models import AdapterVersion, SkillVersion, TeacherVersion


@dataclass
class Pushed:
    pushed: list[str] = field(default_factory=list)
    """Each version uploaded: ``<table> <number>: <new URI>``."""
    left: list[str] = field(default_factory=list)
    """Each version left local, and why."""


def push_local_versions(
    settings: Settings, sessions: sessionmaker[Session], say: Callable[[str], None] = print
) -> Pushed:
    store = artifacts(settings)
    if not store.remote:
        raise ValueError("SEAL_ARTIFACT_URL names no object store to push to")
    store.ensure_bucket()
    done = Pushed()
    models: list[Any] = [AdapterVersion, SkillVersion, TeacherVersion]
    for model in models:
        with session_scope(sessions) as session:
            rows = [
                (v.id, v.number, v.artifact_uri, v.checksum)
                for v in session.scalars(
                    select(model).where(
                        model.artifact_uri.is_not(None), ~model.artifact_uri.startswith(SCHEME)
                    )
                )
            ]
        for version_id, number, uri, checksum in rows:
            name = f"{model.__tablename__} {number}"
            folder = Path(str(uri))
            why = None
            if not checksum:
                why = "no checksum"
            elif not folder.is_dir():
                why = f"{folder} is missing"
            elif not folder.resolve().is_relative_to(store.root):
                why = f"{folder} is outside SEAL_ADAPTER_DIR"
            else:
                try:
                    load_adapter(folder, expected_checksum=checksum)
                except (OSError, ValueError) as exc:
                    why = str(exc)
            if why is not None:
                done.left.append(f"{name}: {why}")
                say(f"left {name}: {why}")
                continue
            assert checksum is not None
            new = store.publish(folder, checksum, move=False)
            with session_scope(sessions) as session:
                session.execute(
                    update(model)
                    .where(model.id == version_id, model.artifact_uri == uri)
                    .values(artifact_uri=new)
                )
            done.pushed.append(f"{name}: {new}")
            say(f"pushed {name}: {new}")
    return done
