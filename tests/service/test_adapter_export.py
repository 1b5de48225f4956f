"""An adapter version taken away as a zip: what it holds, what is refused, and that PEFT loads
it on the base model unchanged and answers as the service's chat does."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from peft import PeftModel
from sqlalchemy.orm import Session
from transformers import AutoTokenizer, LlamaForCausalLM

from seal.lora import CONFIG_FILE, STUDENT, WEIGHTS_FILE, AdapterHost, save_adapter
from service.domain import adapters as adapter_domain
from service.inference import ModelChatBackend, get_chat_backend
from service.settings import Settings
from service.store.models import Tenant, VersionStatus
from service.store.repositories import adapters as adapter_repo
from tests.factories import auth, make_tenant
from tests.model_cache import CACHE
from tests.tiny import SPEC, load_tiny
from tests.tiny import tiny_model_dir as tiny_model_dir  # the fixture


def _version(
    session: Session, settings: Settings, tenant: Tenant, tiny: Path, seed: int, **fields: object
) -> tuple[int, Path]:
    """A version with real (random, nonzero) weights for the tiny model, saved as the worker
    saves them."""
    host = AdapterHost(load_tiny(tiny), {STUDENT: SPEC})
    torch.manual_seed(seed)
    state = {k: torch.randn_like(v) * 0.5 for k, v in host.fresh_state(STUDENT).items()}
    folder = settings.resolved_adapter_dir / tenant.id / f"v{seed}"
    digest = save_adapter(state, SPEC, folder, base_model=str(tiny))
    version = adapter_repo.create_adapter_version(
        session,
        tenant_id=tenant.id,
        artifact_uri=str(folder),
        checksum=digest,
        metrics={"probe_accuracy": 0.5},
        **fields,  # type: ignore[arg-type]
    )
    adapter_repo.promote_version(session, tenant_id=tenant.id, version=version)
    return version.number, folder


def _unzip(content: bytes, into: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as zf:
        zf.extractall(into)
        return {name: zf.read(name) for name in zf.namelist()}


def test_an_archive_holds_peft_files_and_a_card(
    client: TestClient, session: Session, settings: Settings, tiny_model_dir: Path, tmp_path: Path
) -> None:
    tenant, key = make_tenant(session)
    first, _ = _version(session, settings, tenant, tiny_model_dir, 1, parent_id=None)
    v1 = adapter_repo.get_adapter_version(session, tenant_id=tenant.id, number=first)
    second, folder = _version(session, settings, tenant, tiny_model_dir, 2, parent_id=v1.id)
    session.commit()
    response = client.get(f"/v1/adapters/{second}/archive", headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert f"-adapter-v{second}.zip" in response.headers["content-disposition"]
    files = _unzip(response.content, tmp_path)
    assert set(files) == {CONFIG_FILE, WEIGHTS_FILE, adapter_domain.CARD_FILE}
    assert files[WEIGHTS_FILE] == (folder / WEIGHTS_FILE).read_bytes()
    card = json.loads(files[adapter_domain.CARD_FILE])
    version = adapter_repo.get_adapter_version(session, tenant_id=tenant.id, number=second)
    assert (card["version"], card["lineage"], card["status"]) == (2, [2, 1], "active")
    assert card["checksum"] == version.checksum == response.headers["etag"].strip('"')
    assert card["base_model"] == settings.student_model
    assert card["metrics"] == {"probe_accuracy": 0.5}
    # the service's constants are seal.lora's, without importing torch into the API
    assert (adapter_domain.CONFIG_FILE, adapter_domain.WEIGHTS_FILE) == (CONFIG_FILE, WEIGHTS_FILE)


def test_an_archive_is_refused_when_it_cannot_be_whole(
    client: TestClient, session: Session, settings: Settings, tiny_model_dir: Path
) -> None:
    tenant, key = make_tenant(session)
    number, folder = _version(session, settings, tenant, tiny_model_dir, 1, parent_id=None)
    gone = adapter_repo.create_adapter_version(session, tenant_id=tenant.id, parent_id=None)
    adapter_repo.set_version_status(session, version=gone, status=VersionStatus.rejected)
    _other, other_key = make_tenant(session)
    session.commit()

    def status(url: str, key: str = key) -> int:
        return client.get(url, headers=auth(key)).status_code

    assert status(f"/v1/adapters/{gone.number}/archive") == 410  # no weights
    assert status("/v1/adapters/9/archive") == 404
    assert status(f"/v1/adapters/{number}/archive", other_key) == 404  # another tenant's
    assert status("/v1/adapters/0/archive") == 422
    assert status(f"/v1/adapters/{number}/archive", "seal-wrong") == 401
    # weights that changed on disk are never handed out
    (folder / WEIGHTS_FILE).write_bytes((folder / WEIGHTS_FILE).read_bytes()[:-8] + bytes(8))
    response = client.get(f"/v1/adapters/{number}/archive", headers=auth(key))
    assert response.status_code == 409 and "checksum" in response.json()["error"]["message"]


def test_peft_loads_an_exported_adapter_and_answers_as_the_chat_does(
    app: FastAPI,
    client: TestClient,
    session: Session,
    settings: Settings,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    """The issue's target: the zip, loaded by PEFT on the base model unchanged (no code of
    the service), answers a greedy question byte for byte as the service's chat does, in
    float32."""
    serving = settings.model_copy(
        update={
            "student_model": str(tiny_model_dir),
            "model_cache_dir": CACHE,
            "dtype": "float32",
            "lora_rank": SPEC.rank,
            "lora_alpha": SPEC.alpha,
        }
    )
    app.dependency_overrides[get_chat_backend] = lambda: ModelChatBackend(serving)
    tenant, key = make_tenant(session)
    number, _ = _version(session, settings, tenant, tiny_model_dir, 3, parent_id=None)
    session.commit()
    messages = [{"role": "user", "content": "Where is the harbour of Poseidonia?"}]
    reply = client.post(
        "/v1/chat/completions",
        json={"model": "default", "messages": messages, "max_tokens": 24, "memory": "weights"},
        headers=auth(key),
    )
    assert reply.status_code == 200, reply.text
    served = reply.json()["choices"][0]["message"]["content"]

    archive = client.get(f"/v1/adapters/{number}/archive", headers=auth(key))
    _unzip(archive.content, tmp_path / "adapter")
    base = LlamaForCausalLM.from_pretrained(str(tiny_model_dir), torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=24, do_sample=False)
    theirs = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert served and theirs == served
    plain = LlamaForCausalLM.from_pretrained(str(tiny_model_dir), torch_dtype=torch.float32)
    with torch.no_grad():
        without = plain.generate(**ids, max_new_tokens=24, do_sample=False)
    assert not torch.equal(without, out)  # the adapter is what made the answer


pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
