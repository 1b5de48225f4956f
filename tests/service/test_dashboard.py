"""The admin dashboard in a real headless browser (Debian's Chromium driven by Playwright)
against the API served by uvicorn: sign-in, the tenant's versions, jobs and reward chart, a
rollback made through the page; the session cookie's flags, CSRF on every action, and no
document text on the page. Screenshots go to the test's folder (and to SEAL_SCREENSHOTS)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy.orm import Session

from migrations import upgrade
from seal.skills.config import DEFAULT_CONFIG
from sealctl.stack import free_port
from service import dashboard
from service.app import create_app
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.models import JobStatus, VersionStatus
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import jobs as job_repo
from service.store.repositories import skills as skill_repo
from tests.conftest import ADMIN_KEY
from tests.factories import (
    make_adapter_version,
    make_document,
    make_job,
    make_reward,
    make_self_edit,
    make_skill,
    make_skill_version,
    make_tenant,
)

SECRET_TEXT = "The vault code of Zorblat Industries is 7-4-1-9."
SECRET_EXAMPLE = ("Invoice 4471 for Quenby Glassworks", "QG-4471")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install chromium); CI installs it",
)


class Served:
    def __init__(self, url: str, settings: Settings, tenant_id: str) -> None:
        self.url, self.settings, self.tenant_id = url, settings, tenant_id

    def active_version(self) -> int | None:
        engine = make_engine(self.settings.resolved_database_url)
        try:
            with session_scope(make_sessionmaker(engine)) as session:
                active = adapter_repo.active_adapter(session, tenant_id=self.tenant_id)
                return active.number if active else None
        finally:
            engine.dispose()

    def active_skill_version(self) -> int | None:
        engine = make_engine(self.settings.resolved_database_url)
        try:
            with session_scope(make_sessionmaker(engine)) as session:
                skill = skill_repo.get_skill_by_name(
                    session, tenant_id=self.tenant_id, name="invoice-codes"
                )
                assert skill is not None
                active = skill_repo.active_skill_version(session, skill_id=skill.id)
                return active.number if active else None
        finally:
            engine.dispose()


def _data(session: Session) -> str:
    tenant, _ = make_tenant(session, name="acme")
    document = make_document(session, tenant, title="Vault", text=SECRET_TEXT)
    v1 = make_adapter_version(session, tenant, status=VersionStatus.active)
    make_adapter_version(
        session, tenant, parent=v1, status=VersionStatus.active, metrics={"probe_accuracy": 0.8}
    )
    make_adapter_version(session, tenant, parent=v1, status=VersionStatus.rejected)
    job = make_job(session, tenant, status=JobStatus.running)
    job.progress, job.message = 0.4, "document 1/2: training its candidates"
    for message, progress, data in (
        ("document 1/2: self-edits written", 0.1, {"self_edits": 2}),
        ("document 1/2: candidate 1 trained", 0.4, {"train_losses": [2.1, 1.5], "reward": 0.5}),
    ):
        job_repo.add_job_event(
            session,
            job_id=job.id,
            tenant_id=tenant.id,
            message=message,
            progress=progress,
            data=data,
        )
    for fmt, value in (("self-qa", 0.2), ("self-qa", 0.4), ("implications", 0.1)):
        make_reward(session, make_self_edit(session, document, format=fmt), value=value)
    skill = make_skill(
        session, tenant, name="invoice-codes", examples=[SECRET_EXAMPLE, ("Invoice 12", "X-12")]
    )
    config = DEFAULT_CONFIG.as_dict()
    s1 = make_skill_version(
        session, skill, status=VersionStatus.active, config=config, metrics={"held_out_score": 0.5}
    )
    make_skill_version(
        session,
        skill,
        parent=s1,
        status=VersionStatus.active,
        config=config,
        metrics={"held_out_score": 1.0},
    )
    make_skill_version(session, skill, parent=s1, status=VersionStatus.rejected, config=config)
    return tenant.id


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        admin_key=ADMIN_KEY,
    )
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    with session_scope(make_sessionmaker(engine, write=True)) as session:
        tenant_id = _data(session)
    engine.dispose()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield Served(f"http://127.0.0.1:{port}", settings, tenant_id)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _shot(page, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SEAL_SCREENSHOTS"):
        folder = Path(os.environ["SEAL_SCREENSHOTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)


def test_an_admin_signs_in_sees_a_tenant_and_rolls_it_back_through_the_page(
    served: Served, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM is not None, "chromium is not installed (apt-get install chromium)"
    assert served.active_version() == 2
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # script errors; a refused request (the wrong key, the CSRF check) is not one
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and not m.text.startswith("Failed to load resource")
                and errors.append(m.text)
            ),
        )

        page.goto(f"{served.url}/admin")
        page.fill("input[name=key]", "not-the-key")
        page.click("button[type=submit]")
        expect(page.get_by_role("alert")).to_contain_text("not the admin key")
        _shot(page, tmp_path, "dashboard-1-refused")

        page.fill("input[name=key]", ADMIN_KEY)
        page.click("button[type=submit]")
        expect(page.locator("#tenant-table")).to_contain_text("acme")
        cookie = next(c for c in page.context.cookies() if c["name"] == dashboard.SESSION_COOKIE)
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/admin"
        _shot(page, tmp_path, "dashboard-2-tenants")

        page.click("a[data-tenant]")
        versions = page.locator("#version-table tbody tr")
        expect(versions).to_have_count(3)
        expect(page.locator("#version-table tr[data-version='2'] td.status")).to_have_text("active")
        expect(
            page.locator("#version-table tr[data-version='3'] button")
        ).to_be_disabled()  # rejected
        expect(page.locator("#job-table")).to_contain_text("running")
        expect(page.locator("#job-table")).to_contain_text("40%")
        page.click("#job-table tr[data-job] button.story")
        events = page.locator("#job-events tbody tr")
        expect(events).to_have_count(2)
        expect(events.nth(0)).to_contain_text("self-edits written")
        expect(events.nth(1)).to_contain_text("train_losses: 2.100 1.500; reward: 0.500")
        expect(page.locator("#job-story-title")).to_contain_text("running")
        expect(page.locator("#reward-chart .legend li")).to_have_count(2)  # two formats
        expect(page.locator("#reward-chart svg circle")).to_have_count(3)
        skill = page.locator("section.skill[data-skill='invoice-codes']")
        expect(skill.locator("h4")).to_have_text("invoice-codes (2 examples, v2 active)")
        expect(skill.locator("tbody tr")).to_have_count(3)
        expect(skill.locator("tr[data-version='2'] td.status")).to_have_text("active")
        expect(skill.locator("tr[data-version='2']")).to_contain_text("1.00")
        expect(skill.locator("tr[data-version='2']")).to_contain_text(
            "augmentations: basic; lr 0.001; 2 epochs; loss on outputs"
        )
        expect(skill.locator("tr[data-version='3'] button")).to_be_disabled()  # rejected
        content = page.content()
        assert SECRET_TEXT not in content
        assert not any(text in content for text in SECRET_EXAMPLE)  # counted, never shown
        _shot(page, tmp_path, "dashboard-3-tenant")

        # an action without the page's CSRF token is refused, and changes nothing
        status = page.evaluate(
            """async (id) => (await fetch(`/admin/api/tenants/${id}/rollback`, {
                method: "POST", headers: {"Content-Type": "application/json"},
                body: JSON.stringify({version: 1})})).status""",
            served.tenant_id,
        )
        assert status == 403 and served.active_version() == 2

        page.click("#version-table tr[data-version='1'] button")
        expect(page.locator("#rollback-status")).to_have_text("Now serving version 1 (was v2).")
        expect(page.locator("#version-table tr[data-version='1'] td.status")).to_have_text("active")
        assert served.active_version() == 1
        _shot(page, tmp_path, "dashboard-4-rolled-back")

        skill.locator("tr[data-version='1'] button").click()
        expect(page.locator("#skill-status")).to_have_text(
            "Skill invoice-codes: now version 1 active (was v2)."
        )
        expect(skill.locator("tr[data-version='1'] td.status")).to_have_text("active")
        assert served.active_skill_version() == 1 and served.active_version() == 1

        page.click("#rollback-base")
        expect(page.locator("#rollback-status")).to_have_text(
            "Now serving the base model (was v1)."
        )
        assert served.active_version() is None

        page.click("#sign-out button")
        expect(page.locator("input[name=key]")).to_be_visible()
        assert not [c for c in page.context.cookies() if c["name"] == dashboard.SESSION_COOKIE]
        assert errors == []
        browser.close()


def test_the_dashboard_data_needs_a_signed_in_session(served: Served) -> None:
    story = f"/admin/api/tenants/{served.tenant_id}/jobs/x/events"
    for path in ("/admin/api/tenants", f"/admin/api/tenants/{served.tenant_id}", story):
        assert httpx.get(served.url + path).status_code == 401
    skill_rollback = f"{served.url}/admin/api/tenants/{served.tenant_id}/skills/x/rollback"
    assert httpx.post(skill_rollback, json={"version": 1}).status_code == 401
    forged = {dashboard.SESSION_COOKIE: "9999999999.nonce.0000"}
    assert httpx.get(f"{served.url}/admin/api/tenants", cookies=forged).status_code == 401
    # a bearer admin key is not a dashboard session, and a form without its token is refused
    bearer = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert httpx.get(f"{served.url}/admin/api/tenants", headers=bearer).status_code == 401
    login = httpx.post(f"{served.url}/admin/login", data={"key": ADMIN_KEY, "csrf": "x"})
    assert login.status_code == 403 and dashboard.SESSION_COOKIE not in login.cookies
    page = httpx.get(f"{served.url}/admin")
    assert "script-src 'self'" in page.headers["content-security-policy"]
