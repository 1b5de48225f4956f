"""The API contract: every route declares the errors it can return, with the error body's
schema, and the errors it returns match it."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.errors import ErrorBody
from tests.factories import auth, make_tenant

ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorBody"}


def _operations(app: FastAPI) -> list[tuple[str, str, dict]]:
    spec = app.openapi()
    return [(m.upper(), path, op) for path, ops in spec["paths"].items() for m, op in ops.items()]


def _schema(op: dict, code: str) -> dict | None:
    response = op["responses"].get(code)
    return response and response.get("content", {}).get("application/json", {}).get("schema")


def test_every_route_declares_its_errors_with_the_error_schema(app: FastAPI) -> None:
    operations = _operations(app)
    assert len(operations) > 20
    for method, path, op in operations:
        where = f"{method} {path}"
        assert _schema(op, "503") == ERROR_SCHEMA, where
        if path == "/healthz":
            continue
        for code in ("401", "422"):
            assert _schema(op, code) == ERROR_SCHEMA, f"{where} {code}"
        if "{" in path:
            assert _schema(op, "404") == ERROR_SCHEMA, f"{where} 404"
        if method != "GET":  # service.edge refuses a body over the route's limit
            assert _schema(op, "413") == ERROR_SCHEMA, f"{where} 413"
    conflicts = {f"{m} {p}" for m, p, op in operations if "409" in op["responses"]}
    assert {"POST /v1/updates", "POST /v1/jobs/{job_id}/cancel", "POST /v1/tenants"} <= conflicts
    assert "HTTPValidationError" not in app.openapi()["components"]["schemas"]


def test_the_errors_returned_match_the_declared_schema(
    client: TestClient, session: Session
) -> None:
    _tenant, key = make_tenant(session)
    responses = [
        client.get("/v1/documents"),  # 401
        client.get("/v1/jobs/nope", headers=auth(key)),  # 404
        client.post("/v1/documents", json={"title": ""}, headers=auth(key)),  # 422
        client.post("/v1/updates", json={}, headers=auth(key)),  # 409: nothing pending
    ]
    assert [r.status_code for r in responses] == [401, 404, 422, 409]
    for response in responses:
        ErrorBody.model_validate(response.json())


def _unbounded(schema: dict, components: dict, where: str, seen: set[str]) -> list[str]:
    """The strings without a maxLength (or enum) and the arrays without a maxItems in
    ``schema``, each named by where it is."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        return _unbounded(components[name], components, name, seen | {name})
    found = []
    if schema.get("type") == "string" and not {"maxLength", "enum", "const"} & set(schema):
        found.append(where)
    if schema.get("type") == "array" and "maxItems" not in schema:
        found.append(f"{where}[]")
    for key in ("anyOf", "oneOf", "allOf"):
        for i, option in enumerate(schema.get(key, [])):
            found += _unbounded(option, components, f"{where}|{i}", seen)
    if isinstance(schema.get("items"), dict):
        found += _unbounded(schema["items"], components, f"{where}[]", seen)
    for name, prop in schema.get("properties", {}).items():
        found += _unbounded(prop, components, f"{where}.{name}", seen)
    return found


def test_every_string_and_list_a_request_carries_has_a_limit(app: FastAPI) -> None:
    spec = app.openapi()
    components = spec["components"]["schemas"]
    found = []
    for method, path, op in _operations(app):
        where = f"{method} {path}"
        for param in op.get("parameters", []):  # a path's are bounded by the request line's
            if param["in"] == "query":
                found += _unbounded(param["schema"], components, f"{where} {param['name']}", set())
        for content in op.get("requestBody", {}).get("content", {}).values():
            found += _unbounded(content["schema"], components, f"{where} body", set())
    assert found == []
