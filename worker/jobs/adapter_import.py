"""The ``adapter_import`` job: an adapter a tenant brought (``POST /v1/adapters``, checked for
its form by the API) is checked against the base model, judged through the gate of an update
(the tenant's probe questions of learned documents, the active version against it), saved as
a version like any other and promoted or rejected. A tenant with nothing learned yet has
nothing to judge it on: its adapter is promoted (the gate's rule: ties promote)."""

from __future__ import annotations

import shutil
from pathlib import Path

from safetensors import SafetensorError
from sqlalchemy.orm import Session

from seal.grading import Probe
from seal.lora import STUDENT, AdapterState, load_adapter, save_adapter
from service.artifacts import artifacts
from service.store.base import utcnow
from service.store.db import in_transaction
from service.store.models import JobStatus, VersionStatus
from service.store.repositories import adapters as adapter_repo
from service.store.repositories import jobs as job_repo
from worker.config import inner_loop_config, student_spec
from worker.jobs.common import Progress, retention_probes, version_folder, weights
from worker.jobs.failures import AdapterRefused
from worker.jobs.lifecycle import JobRun, run_job
from worker.jobs.update.gate import Gate, evaluate
from worker.runtime import Runtime


def run_import(runtime: Runtime, job_id: str) -> bool:
    """Run one import job to its end through the job lifecycle (False: it was not queued)."""
    return run_job(runtime, job_id, lambda run: _judge(runtime, run), message="reading the adapter")


def _fitting(runtime: Runtime, staging: Path) -> AdapterState:
    """The adapter's weights, refused unless they are exactly the tensors this service's LoRA
    has on the base model, of the same shapes."""
    try:
        state = load_adapter(staging)
    except (OSError, SafetensorError) as exc:
        raise AdapterRefused("the adapter's weights could not be read") from exc
    fresh = runtime.student.fresh_state(STUDENT)
    missing, extra = sorted(set(fresh) - set(state)), sorted(set(state) - set(fresh))
    if missing or extra:
        name = (missing or extra)[0]
        why = "lacks" if missing else "has a tensor the base model's LoRA does not:"
        raise AdapterRefused(f"the adapter does not fit the base model: it {why} {name}")
    for name, tensor in fresh.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise AdapterRefused(
                f"the adapter does not fit the base model: {name} is "
                f"{tuple(state[name].shape)}, the base model's LoRA takes {tuple(tensor.shape)}"
            )
    return {k: v.to(fresh[k].dtype) for k, v in state.items()}


def _judge(runtime: Runtime, run: JobRun) -> None:
    settings, host = runtime.settings, runtime.student
    staging = Path(run.job.params["staging"])
    progress = Progress(run, total=3)
    state = _fitting(runtime, staging)
    progress.step("the adapter fits the base model")

    def snapshot(session: Session) -> tuple[str | None, AdapterState | None, list[Probe]]:
        active = adapter_repo.active_adapter(session, tenant_id=run.job.tenant_id)
        probes = retention_probes(session, settings, run.job.tenant_id)
        return (active.id if active else None), weights(settings, active), probes

    parent_id, parent_state, probes = in_transaction(runtime.sessions, snapshot)
    config = inner_loop_config(settings)
    before = evaluate(host, parent_state, probes, config)
    after = evaluate(host, state, probes, config)
    gate = Gate(before, after, before, after, settings.retention_tolerance)
    refusal = None if not probes else gate.refusal()
    verdict = "the gate promotes it" if refusal is None else f"the gate refuses it: it {refusal}"
    metrics = {
        "imported": True,
        "probe_questions": len(probes),
        "probe_accuracy_before": before.accuracy if probes else None,
        "probe_accuracy": after.accuracy if probes else None,
    }
    progress.step(verdict, data={"promoted": refusal is None, "reason": refusal, **metrics})
    target = version_folder(settings, run.job.tenant_id, run.id)
    digest = save_adapter(
        state,
        student_spec(settings),
        target,
        base_model=settings.student_model,
        extra={"tenant_id": run.job.tenant_id, "job_id": run.id, "imported": True},
    )

    def record(session: Session) -> None:
        version = adapter_repo.create_adapter_version(
            session,
            tenant_id=run.job.tenant_id,
            parent_id=parent_id,
            artifact_uri=uri,
            checksum=digest,
            metrics={**metrics, "imported_at": utcnow().isoformat()},
            job_id=run.id,
        )
        if refusal is None:
            adapter_repo.promote_version(session, tenant_id=run.job.tenant_id, version=version)
        else:
            adapter_repo.set_version_status(session, version=version, status=VersionStatus.rejected)
        outcome = "promoted" if refusal is None else f"rejected: it {refusal}"
        job_repo.finish_job(
            session,
            job_id=run.id,
            status=JobStatus.succeeded,
            message=f"imported as version {version.number}, {outcome}",
            result={
                "adapter_version": version.number,
                "promoted": refusal is None,
                "rejected_because": refusal,
                "metrics": metrics,
            },
        )

    with artifacts(settings).publishing(target, digest) as uri:
        run.finish_with("recording the imported version", record)
    shutil.rmtree(staging, ignore_errors=True)
