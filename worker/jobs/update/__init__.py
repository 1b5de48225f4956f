"""The update job: a tenant's pending documents in, one new adapter version out.

Its stages, one module each: :mod:`.state` (what the job reads when it starts),
:mod:`.sampling` (the teacher's self-edits and probe questions), :mod:`.scoring` (the inner
loop that chooses each document's self-edit), :mod:`.gate` (how the version is judged),
:mod:`.records` (what the store keeps) and :mod:`.job` (the stages in order).
"""

from worker.jobs.update.gate import Gate
from worker.jobs.update.job import run_update
from worker.jobs.update.state import (
    BATCH_METRIC,
    CANDIDATE_METRIC,
    PASSAGE_GAIN_METRIC,
    VERSION_METRIC,
)

__all__ = [
    "BATCH_METRIC",
    "CANDIDATE_METRIC",
    "PASSAGE_GAIN_METRIC",
    "VERSION_METRIC",
    "Gate",
    "run_update",
]
