"""What a tenant is told when its job fails: a message that says what to do, and a stable
``error_code``; never the exception's text, which can hold paths, SQL with its parameters (a
document's words), the teacher's URL or its reply. The exception goes to the worker's log with
the job's id, which the message names so the tenant can quote it to the operator."""

from __future__ import annotations

from dataclasses import dataclass

from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from seal.modeling import ModelNotFoundError
from seal.remote import TeacherUnavailable
from worker.config import ExternalTeacher


@dataclass(frozen=True)
class Failure:
    code: str
    message: str


class AdapterRefused(Exception):
    """An imported adapter the job cannot use; its text is the service's own, for the tenant."""


def describe(exc: BaseException, job_id: str) -> Failure:
    """The failure a tenant sees for ``exc``."""
    if isinstance(exc, AdapterRefused):
        return Failure("adapter_refused", str(exc))
    quote = f"the operator finds the details in the worker's log under job {job_id}"
    if isinstance(exc, TeacherUnavailable):
        return Failure(
            "teacher_unavailable",
            f"the teacher endpoint did not answer; send the job again once it is back ({quote})",
        )
    if isinstance(exc, ExternalTeacher):
        return Failure(
            "external_teacher",
            "this job trains the bundled teacher, but this service writes self-edits with an "
            "external teacher, whose weights it cannot train",
        )
    if isinstance(exc, ModelNotFoundError):
        return Failure("model_unavailable", f"the model could not be loaded ({quote})")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return Failure(
            "out_of_memory",
            "the worker ran out of memory; send fewer or shorter documents per update, or "
            f"ask the operator ({quote})",
        )
    if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        return Failure(
            "time_limit",
            "the job ran past its time limit; send fewer documents per update, or ask the "
            f"operator for a longer limit ({quote})",
        )
    if isinstance(exc, ValueError) and "checksum" in str(exc):
        return Failure(
            "artifact_corrupt",
            "a stored adapter does not match its checksum; roll back to another version, or "
            f"ask the operator ({quote})",
        )
    return Failure("internal_error", f"the job failed on an internal error ({quote})")
