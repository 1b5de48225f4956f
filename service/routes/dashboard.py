"""``/admin``: the operators' dashboard, served by the API with no build step (one HTML page,
one script, one style sheet under ``service/static``). Tenants; each tenant's adapter versions
with their metrics and status; its skills with their versions (held-out score, configuration);
its jobs with live progress; its reward history as a chart by format and teacher version;
rollback buttons for adapters and skills that call the same rules as the admin API.

Signed in with the admin key (``service.dashboard``: an HttpOnly, SameSite=Strict session
cookie; a CSRF token on every action). It shows no document's text: counts only."""

from __future__ import annotations

import hmac
import html
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Form, Header, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import dashboard
from service.deps import ReadSessionDep, SessionDep, SettingsDep
from service.domain import skills as skill_domain
from service.domain import tenants as tenant_domain
from service.domain import updates as update_domain
from service.domain.errors import Forbidden, ServiceError
from service.domain.versions import rollback as rollback_version
from service.presenters import adapter_public, rolled_back, skill_version_public
from service.schemas import MAX_NUMBER, AdapterPublic, JobEventPublic
from service.settings import Settings
from service.skill_schemas import SkillVersionPublic
from service.store.models import AdapterVersion, Document, Job, Skill, VersionStatus
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import learning as learning_repo
from service.store.repositories import skills as skill_repo
from service.store.repositories import tenants as tenant_repo
from service.store.repositories.adapters import ADAPTERS
from service.store.repositories.skills import SKILL_VERSIONS

STATIC = Path(__file__).resolve().parents[1] / "static"
router = APIRouter(prefix="/admin", include_in_schema=False)

#: No script, style or frame from anywhere else, no inline script: what the page needs only.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class SignedOut(ServiceError):
    """No dashboard session (a cookie, not a bearer key: no WWW-Authenticate challenge)."""

    status_code = 401
    type = "unauthorized"


def _page(body: str, *, status: int = 200, csrf: str = "") -> HTMLResponse:
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SEAL admin</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{html.escape(csrf)}">
<link rel="stylesheet" href="/admin/static/admin.css"></head>
<body>{body}</body></html>"""
    return HTMLResponse(document, status_code=status, headers=_HEADERS)


def _sign_in_page(token: str, error: str = "", status: int = 200) -> HTMLResponse:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    response = _page(
        f"""<main class="sign-in"><h1>SEAL admin</h1>{message}
<form method="post" action="/admin/login">
<input type="hidden" name="csrf" value="{html.escape(token)}">
<label>Admin key <input type="password" name="key" autocomplete="current-password" required
autofocus></label><button type="submit">Sign in</button></form></main>""",
        status=status,
    )
    response.set_cookie(
        dashboard.LOGIN_COOKIE, token, httponly=True, samesite="strict", path=dashboard.COOKIE_PATH
    )
    return response


def _session(settings: Settings, request: Request) -> dashboard.Session | None:
    return dashboard.read_session(settings, request.cookies.get(dashboard.SESSION_COOKIE))


@router.get("", response_class=HTMLResponse)
def page(request: Request, settings: SettingsDep) -> HTMLResponse:
    session = _session(settings, request)
    if session is None:
        return _sign_in_page(dashboard.new_login_token())
    token = dashboard.csrf_token(settings, session)
    return _page(
        """<header><h1>SEAL admin</h1>
<form id="sign-out" method="post" action="/admin/logout">
<input type="hidden" name="csrf" value="{csrf}"><button type="submit">Sign out</button>
</form></header>
<main><section id="tenants"><h2>Tenants</h2><table id="tenant-table"><thead><tr>
<th>name</th><th>format</th><th>active version</th><th>documents</th><th>skills</th>
<th>open jobs</th>
</tr></thead><tbody></tbody></table></section>
<section id="tenant" hidden><h2 id="tenant-name"></h2>
<h3>Adapter versions</h3><p id="rollback-status" role="status"></p>
<table id="version-table"><thead><tr><th>version</th><th>status</th><th>parent</th>
<th>probe accuracy</th><th>metrics</th><th>created</th><th></th></tr></thead><tbody></tbody>
</table><button id="rollback-base" class="rollback" data-version="0">Serve the base model
</button>
<h3>Skills</h3><p id="skill-status" role="status"></p><div id="skills"></div>
<h3>Jobs</h3><table id="job-table"><thead><tr><th>kind</th><th>status</th><th>progress</th>
<th>message</th><th>created</th><th></th></tr></thead><tbody></tbody></table>
<section id="job-story" hidden><h4 id="job-story-title"></h4><table id="job-events"><thead>
<tr><th>time</th><th>progress</th><th>stage</th><th>figures</th></tr></thead><tbody></tbody>
</table></section>
<h3>Reward history</h3><div id="reward-chart"></div></section></main>
<script src="/admin/static/admin.js"></script>""".replace("{csrf}", html.escape(token)),
        csrf=token,
    )


#: Failed sign-ins one address may make in a minute; past them it is answered 429 (a valid
#: admin key still signs in: an attacker cannot lock the admin out).
SIGN_IN_FAILURES_PER_MINUTE = 10


@router.post("/login")
def login(
    request: Request,
    settings: SettingsDep,
    key: Annotated[str, Form(max_length=1000)],
    csrf: Annotated[str, Form(max_length=200)],
    login_cookie: Annotated[str | None, Cookie(alias=dashboard.LOGIN_COOKIE)] = None,
) -> Response:
    if not login_cookie or not hmac.compare_digest(csrf.encode(), login_cookie.encode()):
        return _sign_in_page(
            dashboard.new_login_token(), "The form expired; sign in again.", status=403
        )
    if not dashboard.key_is_admin(settings, key):
        client = request.client.host if request.client else "unknown"
        wait = request.app.state.counters.sign_in_failed(client, SIGN_IN_FAILURES_PER_MINUTE)
        if wait:
            page = _sign_in_page(
                dashboard.new_login_token(),
                f"Too many failed sign-ins from this address; try again in {wait} s.",
                status=429,
            )
            page.headers["Retry-After"] = str(wait)
            return page
        return _sign_in_page(dashboard.new_login_token(), "That is not the admin key.", status=401)
    response = RedirectResponse("/admin", status_code=303)
    response.set_cookie(
        dashboard.SESSION_COOKIE,
        dashboard.new_session(settings),
        max_age=dashboard.SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=settings.environment == "production",
        path=dashboard.COOKIE_PATH,
    )
    response.delete_cookie(dashboard.LOGIN_COOKIE, path=dashboard.COOKIE_PATH)
    return response


@router.post("/logout")
def logout(
    request: Request, settings: SettingsDep, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """Sign out: the form carries the session's CSRF token."""
    session = _session(settings, request)
    if session is not None and not dashboard.csrf_ok(settings, session, csrf):
        raise Forbidden("missing or wrong CSRF token: reload /admin")
    response = RedirectResponse("/admin", status_code=303)
    response.delete_cookie(dashboard.SESSION_COOKIE, path=dashboard.COOKIE_PATH)
    return response


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    files = {"admin.js": "text/javascript", "admin.css": "text/css"}
    if name not in files:
        raise Forbidden(f"no such file: {name}")
    return FileResponse(STATIC / name, media_type=files[name], headers=_HEADERS)


# --- the page's data, signed-in only ---------------------------------------------------------
def _signed_in(request: Request, settings: SettingsDep) -> dashboard.Session:
    session = _session(settings, request)
    if session is None:
        raise SignedOut("sign in at /admin")
    return session


def _checked(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str | None, Header(alias="X-CSRF-Token")] = None,
) -> dashboard.Session:
    session = _signed_in(request, settings)
    if not dashboard.csrf_ok(settings, session, token):
        raise Forbidden("missing or wrong CSRF token: reload /admin")
    return session


@router.get("/api/tenants")
def tenants(
    request: Request, session: ReadSessionDep, settings: SettingsDep
) -> list[dict[str, Any]]:
    _signed_in(request, settings)
    # one grouped query per column, not one per tenant
    documents = dict(
        session.execute(select(Document.tenant_id, func.count()).group_by(Document.tenant_id)).all()
    )
    skills = dict(
        session.execute(select(Skill.tenant_id, func.count()).group_by(Skill.tenant_id)).all()
    )
    open_jobs = dict(
        session.execute(
            select(Job.tenant_id, func.count())
            .where(Job.status.in_(job_repo.OPEN_STATUSES))
            .group_by(Job.tenant_id)
        ).all()
    )
    active = dict(
        session.execute(
            select(AdapterVersion.tenant_id, AdapterVersion.number).where(
                AdapterVersion.status == VersionStatus.active
            )
        ).all()
    )
    return [
        {
            "id": tenant.id,
            "name": tenant.name,
            "format": tenant.self_edit_format,
            "active_version": active.get(tenant.id),
            "documents": documents.get(tenant.id, 0),
            "skills": skills.get(tenant.id, 0),
            "open_jobs": open_jobs.get(tenant.id, 0),
        }
        for tenant in tenant_repo.list_tenants(session)
    ]


@router.get("/api/tenants/{tenant_id}")
def tenant_detail(
    tenant_id: str, request: Request, session: ReadSessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Versions, skills, recent jobs and rewards of one tenant: numbers only, no document's or
    example's text."""
    _signed_in(request, settings)
    tenant = tenant_domain.get_tenant(session, tenant_id)
    versions = [
        adapter_public(session, v, parent).model_dump(mode="json")
        for v, parent in adapter_repo.list_adapter_versions(session, tenant_id=tenant.id)
    ]
    jobs, _total = job_repo.list_jobs(session, tenant_id=tenant.id, limit=20, offset=0)
    rewards = learning_repo.list_rewards(session, tenant_id=tenant.id, limit=2000)
    return {
        "id": tenant.id,
        "name": tenant.name,
        "versions": versions,
        "skills": _skills(session, tenant.id),
        "jobs": [_job(j) for j in jobs],
        "rewards": [
            {
                "at": row.reward.created_at.isoformat(),
                "metric": row.reward.metric,
                "value": row.reward.value,
                "format": row.format or "passage",
                "teacher_version": row.teacher_version or 0,
            }
            for row in rewards
        ],
    }


def _skills(session: Session, tenant_id: str) -> list[dict[str, Any]]:
    """Each skill with its versions (their held-out scores and configurations); the examples
    are counted, not shown."""
    summaries = skill_repo.summarize(
        session, skills=skill_repo.list_skills(session, tenant_id=tenant_id)
    )
    versions = skill_repo.versions_of_skills(
        session, skill_ids=[summary.skill.id for summary in summaries]
    )
    return [
        {
            "id": summary.skill.id,
            "name": summary.skill.name,
            "examples": summary.examples,
            "active_version": summary.active_version,
            "versions": [
                skill_version_public(session, version, parent).model_dump(mode="json")
                for version, parent in versions.get(summary.skill.id, [])
            ],
        }
        for summary in summaries
    ]


@router.get("/api/tenants/{tenant_id}/jobs/{job_id}/events")
def job_story(
    tenant_id: str, job_id: str, request: Request, session: ReadSessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """A job's story (``GET /v1/jobs/{id}/events``), its first 500 stages."""
    _signed_in(request, settings)
    tenant = tenant_domain.get_tenant(session, tenant_id)
    job = update_domain.get_job(session, tenant.id, job_id)
    events, total = job_repo.list_job_events(session, job_id=job.id, limit=500, offset=0)
    return {
        "job": _job(job),
        "total": total,
        "events": [JobEventPublic.model_validate(e).model_dump(mode="json") for e in events],
    }


def _job(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": str(job.kind),
        "status": str(job.status),
        "progress": job.progress,
        "message": job.message,
        "created_at": job.created_at.isoformat(),
    }


class DashboardRollback(BaseModel):
    version: int = Field(ge=0, le=MAX_NUMBER)


@router.post("/api/tenants/{tenant_id}/rollback")
def rollback(
    tenant_id: str,
    body: DashboardRollback,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Header(alias="X-CSRF-Token")] = None,
) -> dict[str, AdapterPublic | None]:
    """What ``POST /v1/admin/tenants/{id}/rollback`` does, from the page."""
    _checked(request, settings, token)
    tenant = tenant_domain.get_tenant(session, tenant_id)
    versions = rollback_version(
        session, ADAPTERS, body.version, owner_name=f"tenant {tenant.name!r}", tenant_id=tenant.id
    )
    return rolled_back(session, versions, adapter_public)


@router.post("/api/tenants/{tenant_id}/skills/{skill_id}/rollback")
def skill_rollback(
    tenant_id: str,
    skill_id: str,
    body: DashboardRollback,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Header(alias="X-CSRF-Token")] = None,
) -> dict[str, SkillVersionPublic | None]:
    """What ``POST /v1/admin/tenants/{id}/skills/{skill_id}/rollback`` does, from the page."""
    _checked(request, settings, token)
    skill = skill_domain.get_skill(session, tenant_domain.get_tenant(session, tenant_id), skill_id)
    versions = rollback_version(
        session, SKILL_VERSIONS, body.version, owner_name=f"skill {skill.name!r}", skill_id=skill.id
    )
    return rolled_back(session, versions, skill_version_public)
