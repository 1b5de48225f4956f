"""How an update's version is judged: its probe questions graded before and after, the
retention set of earlier documents, and the promotion rule."""

from __future__ import annotations

from dataclasses import dataclass

from seal.grading import Evaluation, Probe
from seal.knowledge import InnerLoopConfig, evaluate_state
from seal.lora import AdapterHost, AdapterState
from seal.multi import split
from worker.jobs.update.state import DocumentWork


@dataclass(frozen=True)
class Gate:
    """Promotion: the batch's probe questions answered by at least ``min_gain`` more than
    before (0: no fewer), and the retention accuracy fell by no more than the tolerance."""

    before: Evaluation
    after: Evaluation
    retention_before: Evaluation
    retention_after: Evaluation
    tolerance: float
    min_gain: int = 0

    def refusal(self) -> str | None:
        if not self.before.graded:
            return "had no probe questions to be judged on"
        counts = f"({self.before.correct} right before, {self.after.correct} after)"
        questions = f"its {len(self.before.graded)} probe questions"
        if self.after.correct < self.before.correct:
            return f"answered fewer of {questions} {counts}"
        if self.after.correct - self.before.correct < self.min_gain:
            return f"did not improve on {questions} by {self.min_gain} {counts}"
        drop = self.retention_before.accuracy - self.retention_after.accuracy
        if drop > self.tolerance + 1e-9:
            return (
                f"forgot earlier documents: retention accuracy fell "
                f"{self.retention_before.accuracy:.3f} -> {self.retention_after.accuracy:.3f} "
                f"(tolerance {self.tolerance:.3f})"
            )
        return None


def evaluate(
    host: AdapterHost, state: AdapterState | None, probes: list[Probe], config: InnerLoopConfig
) -> Evaluation:
    return evaluate_state(host, state, probes, config.answer_max_tokens)


def evaluate_each(
    host: AdapterHost, state: AdapterState | None, docs: list[DocumentWork], config: InnerLoopConfig
) -> list[Evaluation]:
    """Each document's evaluation, all their probes graded in the same batches."""
    flat = evaluate(host, state, [p for w in docs for p in w.probes()], config).graded
    return [Evaluation(part) for part in split(flat, [len(w.passage.questions) for w in docs])]


def merge(evaluations: list[Evaluation]) -> Evaluation:
    return Evaluation([g for e in evaluations for g in e.graded])


def judged(evaluation: Evaluation | None, work: DocumentWork) -> Evaluation:
    """The part of a document's evaluation the gate judges: the probes that did not choose
    its candidate (``work.judged_on``), or all of them."""
    if evaluation is None:
        return Evaluation([])
    if work.judged_on is None:
        return evaluation
    return Evaluation([evaluation.graded[i] for i in work.judged_on])
