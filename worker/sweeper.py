"""The sweeper: folders under the adapter folder that nothing owns any more, removed by the
beat's check (:func:`worker.schedule.run_schedule`).

Deleting a tenant, a skill or a version removes its folders once the deletion is committed,
but a folder can outlive its rows: a skill job that saved its weights just before its tenant
or skill was deleted, a process that died between the commit and the removal (a folder left
moved aside as ``.<name>.deleting-...``). The sweeper removes

- the folders of tenants that no longer exist (``<tenant>``, ``skills/<tenant>``,
  ``teachers/<tenant>``; a name is taken for a tenant's only when it is a tenant id's shape);
- the folders of skills that no longer exist (``skills/<tenant>/<skill>``);
- folders moved aside for deletion more than ``ASIDE_AGE_S`` ago (by the time of the move,
  their ``ctime``: a younger one may belong to a transaction still open, which would put it
  back on a rollback);
- with object storage, this machine's cached copies of weights no version records any more
  (deleted, maybe from another machine), and downloads a stopped process left half done.

The folders are listed before the owners are read, so an owner made meanwhile is seen.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from sqlalchemy import select

from service.artifacts import artifacts
from service.store.db import session_scope
from service.store.models import AdapterVersion, Skill, SkillVersion, TeacherVersion, Tenant
from worker.runtime import Runtime

log = logging.getLogger(__name__)

#: How old a folder moved aside for deletion must be before the sweeper removes it.
ASIDE_AGE_S = 3600
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ASIDE = re.compile(r"^\..+\.deleting-[0-9a-f]+$")


def _dirs(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def sweep(runtime: Runtime, *, now: float | None = None) -> list[str]:
    """Remove what nothing owns (see the module's docstring); returns the folders removed."""
    root = runtime.settings.resolved_adapter_dir
    now = time.time() if now is None else now
    owned_by_tenant = [
        p for base in (root, root / "skills", root / "teachers") for p in _dirs(base)
        if _ID.match(p.name)
    ]  # fmt: skip
    skill_folders = [s for t in _dirs(root / "skills") for s in _dirs(t) if _ID.match(s.name)]
    asides = [p for p in root.rglob(".*.deleting-*") if p.is_dir() and _ASIDE.match(p.name)]
    with session_scope(runtime.sessions) as session:
        tenants = set(session.scalars(select(Tenant.id)))
        skills = set(session.scalars(select(Skill.id)))
        checksums = {
            c
            for model in (AdapterVersion, TeacherVersion, SkillVersion)
            for c in session.scalars(select(model.checksum).where(model.checksum.is_not(None)))
        }
    doomed = [p for p in owned_by_tenant if p.name not in tenants]
    doomed += [p for p in skill_folders if p.name not in skills and p.parent.name in tenants]
    doomed += [p for p in asides if now - p.stat().st_ctime > ASIDE_AGE_S]
    removed = []
    for folder in doomed:
        try:
            shutil.rmtree(folder)
        except OSError:
            log.exception("sweeper: could not remove %s", folder)
            continue
        removed.append(str(folder))
    store = artifacts(runtime.settings)
    if store.remote:
        cached = store.prune_cache(checksums, now=now, min_age_s=ASIDE_AGE_S)
        removed += [str(store.cache / name) for name in cached]
    if removed:
        log.info("sweeper: removed %d folder(s) nothing owns: %s", len(removed), removed)
    return removed
