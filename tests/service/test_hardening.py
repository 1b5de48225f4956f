"""What a review as an attacker would read found, each fixed: errors and logs that leak no
tenant data, a CSRF token that is not ASCII, a rollback that races a weights deletion."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import dashboard
from service.domain import teachers as teacher_domain
from service.domain.errors import Gone
from service.settings import Settings
from service.store.db import make_engine, make_sessionmaker, session_scope
from service.store.models import AdapterVersion, Tenant, VersionStatus
from service.store.repositories import adapters as adapter_repo
from tests.factories import make_adapter_version, make_tenant


def test_a_store_error_does_not_carry_the_statements_parameters(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
        connection.execute(text("INSERT INTO t VALUES (1, 'x')"))
    secret = "the tenant's confidential merger memo"
    with pytest.raises(IntegrityError) as caught, engine.begin() as connection:
        connection.execute(text("INSERT INTO t VALUES (1, :body)"), {"body": secret})
    assert secret not in str(caught.value)
    engine.dispose()


@pytest.mark.parametrize("token", ["é", "\u2603" * 10, "x"])
def test_a_sign_in_with_a_foreign_csrf_token_is_refused_not_a_500(
    client: TestClient, token: str
) -> None:
    assert client.get("/admin").status_code == 200
    response = client.post(
        "/admin/login",
        data={"key": "whatever", "csrf": token},
        cookies={dashboard.LOGIN_COOKIE: "ascii-token"},
        follow_redirects=False,
    )
    assert response.status_code == 403


def test_a_rollback_that_races_a_weights_deletion_fails_and_changes_nothing(
    session: Session,
) -> None:
    tenant, _ = make_tenant(session)
    active = make_adapter_version(session, tenant, status=VersionStatus.active)
    old = make_adapter_version(session, tenant, status=VersionStatus.retired)
    session.commit()
    # the rollback has read ``old`` with its weights; a deletion of them commits meanwhile
    session.execute(
        update(AdapterVersion).where(AdapterVersion.id == old.id).values(artifact_uri=None)
    )
    with pytest.raises(Gone, match="weights were deleted"):
        adapter_repo.promote_version(session, tenant_id=tenant.id, version=old)
    session.rollback()
    assert adapter_repo.active_adapter(session, tenant_id=tenant.id).id == active.id  # type: ignore[union-attr]


def test_two_teacher_round_requests_at_once_make_one_round(
    engine: Engine, settings: Settings
) -> None:
    """The second request waits on the tenant's row until the first commits, then finds its
    round (the rounds have no unique index: a round's domain is in its params)."""
    factory = make_sessionmaker(engine, write=True)
    name = f"hardening-{time.time_ns()}"
    with session_scope(factory) as session:
        tenant_id = make_tenant(session, name=name)[0].id
    first = factory()
    thread: threading.Thread | None = None
    try:
        tenant = first.get(Tenant, tenant_id)
        assert tenant is not None
        job = teacher_domain.request_round(first, settings, tenant)
        second: list[str] = []

        def request() -> None:
            with session_scope(factory) as session:
                other = session.get(Tenant, tenant_id)
                assert other is not None
                second.append(teacher_domain.request_round(session, settings, other).id)

        thread = threading.Thread(target=request, daemon=True)
        thread.start()
        time.sleep(0.5)
        assert not second  # it waits for the first transaction
        first.commit()
        thread.join(30)
        assert second == [job.id]
    finally:
        first.close()
        if thread is not None:
            thread.join(30)
        with session_scope(factory) as session:
            session.execute(delete(Tenant).where(Tenant.name == name))
