"""Admin keys: several at once (to rotate without downtime), a key that reads only the metrics,
production's refusal of short ones, and a key never printed outside development."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError
from sqlalchemy.orm import Session

from sealctl.cli import admin_key_line
from service.settings import Settings
from tests.factories import auth, make_tenant

OLD = "old-admin-key-0123456789"
METRICS = "prometheus-key-0123456789"


@pytest.fixture
def rotating(app: FastAPI) -> FastAPI:
    app.state.settings = app.state.settings.model_copy(
        update={
            "admin_extra_keys": SecretStr(f" {OLD} , another-admin-key-0123 "),
            "metrics_key": SecretStr(METRICS),
        }
    )
    return app


def test_every_admin_key_is_an_admin_key_while_it_is_rotated(
    rotating: FastAPI, admin_headers: dict[str, str]
) -> None:
    with TestClient(rotating) as client:
        for headers in (admin_headers, auth(OLD), auth("another-admin-key-0123")):
            assert client.get("/v1/tenants", headers=headers).status_code == 200
            created = client.post("/v1/tenants", json={"name": f"t{len(headers)}"}, headers=headers)
            assert created.status_code in (201, 409), created.text
        assert client.get("/v1/tenants", headers=auth("not-a-key-at-all-0123")).status_code == 401


def test_the_metrics_key_reads_the_metrics_and_nothing_else(
    rotating: FastAPI, session: Session, admin_headers: dict[str, str]
) -> None:
    _tenant, tenant_key = make_tenant(session)
    session.commit()
    with TestClient(rotating) as client:
        assert client.get("/metrics", headers=auth(METRICS)).status_code == 200
        assert client.get("/metrics", headers=admin_headers).status_code == 200
        assert client.get("/metrics", headers=auth(OLD)).status_code == 200
        refused = client.get("/metrics", headers=auth(tenant_key))
        assert refused.status_code == 401 and "metrics key" in refused.json()["error"]["message"]
        for method, path in (("GET", "/v1/tenants"), ("POST", "/v1/tenants")):
            response = client.request(method, path, json={"name": "x"}, headers=auth(METRICS))
            assert response.status_code == 401, (method, path)


@pytest.mark.parametrize(
    ("field", "value"),
    [("admin_extra_keys", "good-admin-key-0123456789,short"), ("metrics_key", "changeme")],
)
def test_production_refuses_a_short_or_placeholder_extra_key(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            environment="production",
            admin_key=SecretStr("a-good-admin-key-0123456789"),
            **{field: SecretStr(value)},
        )


def test_only_development_prints_the_admin_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = "a-good-admin-key-0123456789"
    dev = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert admin_key_line(dev, key) == f"admin key: {key}"
    prod = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="production",
        admin_key=SecretStr(key),
        data_dir=tmp_path,
    )
    assert key not in admin_key_line(prod, key)
