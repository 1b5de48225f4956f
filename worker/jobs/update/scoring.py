"""The inner loop of a ``select`` update: each document's candidates (its self-edits and the
passage alone) trained from the active version, rewarded on its probes, and one kept."""

from __future__ import annotations

from seal.knowledge import (
    Candidate,
    InnerLoopConfig,
    choose_candidate,
    score_candidates,
    split_probes,
)
from seal.lora import AdapterHost
from seal.selfedit import ChatTurn
from worker.jobs.common import Progress
from worker.jobs.update.state import DocumentWork, Snapshot


def score_document(
    host: AdapterHost,
    snap: Snapshot,
    work: DocumentWork,
    texts: list[str],
    config: InnerLoopConfig,
    replay: list[str | ChatTurn],
    progress: Progress,
    label: str,
    *,
    position: int,
    margin: int = 1,
    held_out: bool = True,
    anchored: bool = False,
) -> list[Candidate]:
    """Train and reward ``work``'s candidates side by side (``k + 1`` progress units), choose
    the one it is learned from (``work.winner``, ``work.kept``, ``work.after``) and return them
    all, the chosen one among them. With ``held_out``, the choice is made on half of the
    document's probes and the other half is left to the gate (``work.judged_on``; the split
    is seeded by the job's seed and the document's ``position`` in the job); the
    passage alone is the incumbent, replaced only by a self-edit that answers ``margin`` more
    (:func:`seal.knowledge.choose_candidate`). With ``anchored``, the self-edits' candidates
    continue from the passage-alone one (``SEAL_ANCHORED_TRAINING``)."""
    assert work.baseline is not None
    n = len(texts) + 1

    def report(i: int, c: Candidate) -> None:
        what = "the passage alone" if c.passage_alone else f"candidate {i + 1}/{n - 1}"
        figures = {
            "candidate": None if c.passage_alone else i + 1,
            "reward": c.reward,
            "probe_accuracy": c.accuracy,
            "train_losses": c.trained.losses if c.trained else None,
        }
        progress.step(f"{label}: {what} earned reward {c.reward:+.3f}", 0, data=figures)

    seen = [0]

    def training(done: int, total: int) -> None:
        # the candidates train together: n progress units spread over their steps
        if done == total or done - seen[0] >= max(1, total // 10):
            units, seen[0] = n * (done - seen[0]) / total, done
            progress.step(
                f"{label}: training {n} candidates, step {done}/{total}", units, tick=True
            )

    candidates = score_candidates(
        host,
        work.passage,
        texts,
        config,
        init=snap.parent_state,
        baseline=work.baseline,
        replay=replay,
        passage_alone=True,
        anchored=anchored,
        on_candidate=report,
        on_step=training,
    )
    n_probes = len(work.passage.questions)
    if held_out:
        chosen_on, work.judged_on = split_probes(n_probes, snap.seed + position)
    else:
        chosen_on, work.judged_on = list(range(n_probes)), None
    best = choose_candidate(candidates, chosen_on, margin=margin)
    work.winner = best
    work.kept = [] if best.passage_alone else [best]
    work.after = best.evaluation
    return candidates
