"""Schemathesis against the running API: the embedded default (SQLite, its own broker file) in
a real uvicorn process, the chat model a tiny one. Every operation of ``/openapi.json`` gets
generated requests as a tenant and as the admin; each answer must be no server error, have a
status the operation declares, and a body that matches the schema declared for that status."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ADMIN_KEY
from tests.servers import RunningApi, embedded_api
from tests.tiny import tiny_model_dir as tiny_model_dir  # the fixture

pytestmark = pytest.mark.slow
# POST /v1/adapters takes a zip: generated bodies are sent as the bytes they are
schemathesis.serializer.alias("application/zip", "application/octet-stream")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Generated requests per operation and generation mode, by the operation's caller; and with
#: the other identity's key. The service's 26 operations get about 1,200 requests.
#: ``SEAL_FUZZ_EXAMPLES=200`` makes a longer run (other requests, as many more).
EXAMPLES = int(os.environ.get("SEAL_FUZZ_EXAMPLES", "20"))
WRONG_KEY_EXAMPLES = max(1, EXAMPLES // 4)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[RunningApi]:
    with embedded_api(tmp_path_factory.mktemp("fuzz"), tiny_model_dir) as running:
        yield running


def _tenant_key(url: str) -> str:
    """A tenant with a document and a question, so that some generated requests find data."""
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.post(f"{url}/v1/tenants", json={"name": "fuzzed"}, headers=admin)
    assert r.status_code == 201, r.text
    key = r.json()["api_key"]
    document = {
        "title": "Zorblat Industries",
        "text": "Zorblat Industries was founded in 1921 by Mira Okafor in Lagos.",
        "questions": [{"question": "Who founded Zorblat Industries?", "answer": "Mira Okafor"}],
    }
    r = httpx.post(f"{url}/v1/documents", json=document, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    return key


def _describe(
    identity: str, label: str, response: schemathesis.Response, exc: BaseException
) -> str:
    """One failed request in a few lines: who, what, which checks failed, how to reproduce."""
    found = exc.exceptions if isinstance(exc, FailureGroup) else (exc,)
    checks = ", ".join(sorted({getattr(f, "title", type(f).__name__) for f in found}))
    curl = next((line.strip() for line in str(exc).splitlines() if "curl " in line), "")
    body = response.text[:300]
    return f"{identity} {label} -> {response.status_code} ({checks}): {body}\n  {curl[:400]}"


def _fuzz(
    api: RunningApi,
    operation: schemathesis.APIOperation,
    run: Run,
    mode: GenerationMode,
    examples: int,
) -> None:
    """``examples`` generated requests to ``operation`` (valid ones or, in the negative mode,
    ones that break the schema), their statuses counted and the failed checks collected, so
    that one run reports every failure rather than the first."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=api.url, headers=run.headers, timeout=120)
        run.statuses[(run.identity, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=run.headers)
        except (AssertionError, FailureGroup) as exc:
            run.failures.append(_describe(run.identity, operation.label, response, exc))

    try:
        fuzz()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # an operation with no parameters and no body has no invalid request to generate


@dataclass
class Run:
    identity: str
    headers: dict[str, str]
    statuses: Counter[tuple[str, int]]
    failures: list[str]


def _is_admin(operation: schemathesis.APIOperation) -> bool:
    return operation.path.startswith(("/v1/admin", "/v1/tenants"))


def test_generated_requests_get_declared_answers(api: RunningApi) -> None:
    """Each operation as its caller (the admin's as the admin, the rest as the tenant), with
    valid and with invalid requests; then a few with the other identity's key (401s)."""
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    statuses: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []
    tenant = Run("tenant", {"Authorization": f"Bearer {_tenant_key(api.url)}"}, statuses, failures)
    admin = Run("admin", {"Authorization": f"Bearer {ADMIN_KEY}"}, statuses, failures)
    operations = [result.ok() for result in schema.get_all_operations()]
    # the tenant's operations first: the admin's may delete the tenant
    for operation in sorted(operations, key=_is_admin):
        caller, other = (admin, tenant) if _is_admin(operation) else (tenant, admin)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(api, operation, caller, mode, EXAMPLES)
        _fuzz(api, operation, other, GenerationMode.POSITIVE, WRONG_KEY_EXAMPLES)
    total = sum(statuses.values())
    print(f"{total} generated requests over {len(operations)} operations: {dict(statuses)}")
    assert total >= 1000, f"only {total} requests were generated"
    assert not failures, (
        f"{len(failures)} failed checks:\n"
        + "\n\n".join(failures[:20])
        + f"\n\nthe API logged:\n{api.errors()}"
    )
