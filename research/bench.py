"""What an update costs: the inner loop, measured against a plain reference implementation.

The reference is what a straightforward SEAL implementation does: one candidate at a time, one
self-edit sampled per call, a fresh copy of the model (with a new PEFT wrapper) per candidate,
random batches padded to their longest sequence, and the candidate's questions graded in one
padded batch on its copy. Ours shares one base model among all adapters, samples the k
self-edits together, trains the k candidates side by side in packed rows and grades them in
one batched decode (``seal.multi``). Both run the same workload with the same configuration.

The ceiling is measured, not assumed: forward + backward of a LoRA-wrapped copy of the model on
a large, padding-free batch, the most training tokens/s this device gives.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from peft import get_peft_model

from seal.generation import generate
from seal.grading import Probe, is_correct
from seal.knowledge import InnerLoopConfig, probes_of, score_candidates
from seal.lora import AdapterHost, LoraSpec
from seal.multi import evaluate_many, train_many
from seal.questions import question_messages
from seal.selfedit import (
    PRIMERS,
    ChatTurn,
    Passage,
    teacher_messages,
    training_sequences,
)
from seal.train import Example, TrainConfig, collate, tokenize


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            import os

            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the process's peak so far
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Phase:
    seconds: float = 0.0
    peak_bytes: int = 0
    tokens: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@contextmanager
def measured(device: torch.device) -> Iterator[Phase]:
    """Wall time and peak memory (GPU memory on CUDA, else the process's resident set,
    sampled every 10 ms) of the block."""
    phase = Phase()
    stop = threading.Event()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)

    def sample() -> None:
        while not stop.is_set():
            phase.peak_bytes = max(phase.peak_bytes, _rss_bytes())
            stop.wait(0.01)

    watcher = threading.Thread(target=sample, daemon=True)
    if not cuda:
        watcher.start()
    started = time.perf_counter()
    try:
        yield phase
    finally:
        if cuda:
            torch.cuda.synchronize(device)
            phase.peak_bytes = int(torch.cuda.max_memory_allocated(device))
        phase.seconds = time.perf_counter() - started
        stop.set()
        if not cuda:
            watcher.join()
            phase.peak_bytes = max(phase.peak_bytes, _rss_bytes())


# --- the plain reference --------------------------------------------------------------------


def _fresh_copy(host: AdapterHost, spec: LoraSpec) -> Any:
    base = host.model.get_base_model()
    with host.model.disable_adapter():  # the copy carries PEFT's wrappers; strip them
        model = copy.deepcopy(base)
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            parent = model.get_submodule(name.rsplit(".", 1)[0])
            setattr(parent, name.rsplit(".", 1)[1], module.get_base_layer())
    if hasattr(model, "peft_config"):  # left by PEFT on the wrapped model; a copy starts bare
        del model.peft_config
    return get_peft_model(model, spec.peft_config())


def plain_train(
    host: AdapterHost, spec: LoraSpec, sequences: Sequence[str | ChatTurn], config: TrainConfig
):
    """A fresh model copy, random padded batches: returns (model, loss tokens)."""
    model = _fresh_copy(host, spec)
    examples = tokenize(host, sequences, config.max_seq_len)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    rng = random.Random(config.seed)
    tokens = 0
    model.train()
    for _ in range(config.epochs):
        order = list(examples)
        rng.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            batch: list[Example] = order[start : start + config.batch_size]
            inputs = collate(batch, host.tokenizer.pad_token_id, host.device)
            model(**inputs).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int((inputs["labels"][:, 1:] != -100).sum())
    model.eval()
    return model, tokens


@torch.inference_mode()
def plain_grade(host: AdapterHost, model: Any, probes: Sequence[Probe], max_new_tokens: int):
    tok = host.tokenizer
    tok.padding_side = "left"
    prompts = [
        str(
            tok.apply_chat_template(
                question_messages(p.title, p.qa.question),
                add_generation_prompt=True,
                tokenize=False,
            )
        )
        for p in probes
    ]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(host.device)
    out = model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    answers = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [is_correct(a, p.qa.answer) for a, p in zip(answers, probes, strict=True)]


def sample_self_edits(
    host: AdapterHost,
    passages: Sequence[Passage],
    config: InnerLoopConfig,
    k: int,
    *,
    together: bool,
) -> tuple[list[list[str]], int]:
    """k self-edits per passage with the untrained teacher (the bare base model): all in
    batched calls (``together``), or one generate call per self-edit as the reference does.
    Returns the texts per passage and the completion tokens decoded."""
    primer = PRIMERS[config.format]
    conversations = [teacher_messages(p, config.format) for p in passages]
    texts: list[list[str]] = []
    tokens = 0
    if together:
        sample = replace(config.sample, batch_size=max(config.sample.batch_size, k))
        gens = generate(host, conversations, sample, num_return_sequences=k, prefix=primer)
        for i in range(len(passages)):
            texts.append([f"{primer} {g.text}" for g in gens[i * k : (i + 1) * k]])
        return texts, sum(g.completion_tokens for g in gens)
    for i, conversation in enumerate(conversations):
        own = []
        for j in range(k):
            seed = (config.sample.seed or 0) + 1000 * i + j
            gen = generate(host, [conversation], replace(config.sample, seed=seed), prefix=primer)
            own.append(f"{primer} {gen[0].text}")
            tokens += gen[0].completion_tokens
        texts.append(own)
    return texts, tokens


def measure_ceiling(
    host: AdapterHost, spec: LoraSpec, *, batch: int = 20, length: int = 64
) -> float:
    """Training tokens/s at the device's sweet spot: a LoRA copy of the model, a padding-free
    batch of ``batch`` x ``length`` tokens, forward + backward + AdamW step."""
    model = _fresh_copy(host, spec)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    ids = torch.randint(0, vocab, (batch, length), generator=generator).to(host.device)
    model.train()

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    if host.device.type == "cuda":
        torch.cuda.synchronize(host.device)
    started = time.perf_counter()
    steps = 3
    for _ in range(steps):
        step()
    if host.device.type == "cuda":
        torch.cuda.synchronize(host.device)
    seconds = time.perf_counter() - started
    return steps * batch * (length - 1) / seconds


@dataclass
class Figure:
    name: str
    unit: str
    reference: float
    ours: float
    higher_is_better: bool
    ceiling_share: float | None = None
    """Ours as a share of the measured training ceiling (training tokens/s phases)."""

    @property
    def gain(self) -> float:
        """How many times better ours is (> 1: ours is faster)."""
        if not self.reference or not self.ours:
            return 0.0
        return self.ours / self.reference if self.higher_is_better else self.reference / self.ours


@dataclass
class BenchReport:
    device: str
    dtype: str
    k: int
    documents: int
    ceiling: float
    """Training tokens/s ceiling in our dtype."""
    reference_dtype: str = ""
    reference_ceiling: float = 0.0
    """The same ceiling in the reference's dtype."""
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)


def _nightly_sequences(docs: Sequence[Passage], texts: Sequence[Sequence[str]], fmt: str):
    return [
        seq
        for doc, own in zip(docs, texts, strict=True)
        for seq in training_sequences(doc, [(fmt, t) for t in own])
    ]


@dataclass
class _Workload:
    """What both implementations run: one document for the per-document figures, and the
    first few documents for the nightly batch."""

    doc: Passage
    probes: list[Probe]
    night_docs: list[Passage]
    night_probes: list[Probe]
    k: int
    batch_self_edits: int

    @classmethod
    def of(
        cls, passages: Sequence[Passage], k: int, nightly_documents: int, batch_self_edits: int
    ) -> _Workload:
        night_docs = list(passages[:nightly_documents])
        night_probes = [p for d in night_docs for p in probes_of(d)]
        return cls(
            passages[0], probes_of(passages[0]), night_docs, night_probes, k, batch_self_edits
        )


@dataclass
class _Side:
    """One implementation's phases on the workload: k self-edits of the document (``sample``),
    the inner loop of one self-edit (``one``), k candidates trained and graded beside the
    baseline (``k``), the nightly batch (``night``); and the part of ``k`` spent training, so
    that the training rate leaves the sampling and grading out."""

    sample: Phase
    one: Phase
    k: Phase
    night: Phase
    train_seconds: float

    @property
    def train_rate(self) -> float:
        return self.k.tokens / self.train_seconds

    @property
    def peak_mib(self) -> float:
        return max(p.peak_bytes for p in (self.sample, self.one, self.k, self.night)) / 2**20


def run_bench(
    host: AdapterHost,
    spec: LoraSpec,
    passages: Sequence[Passage],
    config: InnerLoopConfig,
    *,
    k: int = 5,
    nightly_documents: int = 4,
    batch_self_edits: int = 1,
    reference_dtype: torch.dtype | None = None,
    on_phase: Callable[[str], None] = lambda _: None,
) -> BenchReport:
    """The fixed workload: ``passages[0]`` for the per-document figures, the first
    ``nightly_documents`` for the nightly batch. Our phases run first, then the reference's:
    the process's resident set rarely shrinks, so the other order would charge the
    reference's model copies to us.

    The reference runs in ``reference_dtype``; None means the plain default of the device
    (float32 on a CPU, bf16 on a GPU), whatever dtype ours runs in. The host's model is
    converted to it (in place) for the reference's phases and back for the last measurement."""
    ours_dtype = next(host.model.parameters()).dtype
    if reference_dtype is None:
        reference_dtype = torch.bfloat16 if host.device.type == "cuda" else torch.float32
    report = BenchReport(
        str(host.device),
        _dtype_name(ours_dtype),
        k,
        nightly_documents,
        ceiling=0.0,
        reference_dtype=_dtype_name(reference_dtype),
    )
    work = _Workload.of(passages, k, nightly_documents, batch_self_edits)
    ours, sets = _run_ours(host, work, config, on_phase)
    host.model.to(reference_dtype)
    ref = _run_reference(host, spec, work, config, sets, on_phase)

    on_phase("measuring the training ceiling")
    report.reference_ceiling = measure_ceiling(host, spec)
    host.model.to(ours_dtype)  # exact: the weights were ours_dtype values all along
    report.ceiling = (
        measure_ceiling(host, spec) if ours_dtype != reference_dtype else report.reference_ceiling
    )
    report.figures = _figures(ref, ours, k, len(work.night_docs), report.ceiling)
    report.notes = _notes(report, ref, ours, config.train)
    return report


def _run_ours(
    host: AdapterHost, work: _Workload, config: InnerLoopConfig, on_phase: Callable[[str], None]
) -> tuple[_Side, list[list[str | ChatTurn]]]:
    """Our phases (``seal.multi``); also the training sequences of the k self-edits, which
    the reference then trains on too."""
    device, doc, probes, k = host.device, work.doc, work.probes, work.k
    answer_tokens = config.answer_max_tokens
    on_phase(f"ours: {k} self-edits in one batched call")
    with measured(device) as sample:
        (texts,), sample.tokens = sample_self_edits(host, [doc], config, k, together=True)
    sets = [training_sequences(doc, [(config.format, t)]) for t in texts]
    on_phase("ours: the inner loop of one self-edit")
    with measured(device) as one:
        trained = train_many(host, sets[:1], config.train, init=None)
        evaluate_many(host, [trained[0].state], probes, answer_tokens)
        one.tokens = trained[0].tokens
    on_phase(f"ours: {k} candidates trained and graded together")
    with measured(device) as k_phase:
        baseline = evaluate_many(host, [None], probes, answer_tokens)[0]
        t0 = time.perf_counter()
        ends: list[float] = []
        candidates = score_candidates(
            host,
            doc,
            texts,
            config,
            init=None,
            baseline=baseline,
            on_step=lambda d, t: ends.append(time.perf_counter()),
        )
        train_seconds = ends[-1] - t0
        k_phase.tokens = sum(c.trained.tokens for c in candidates if c.trained)
    on_phase(f"ours: nightly batch of {len(work.night_docs)} documents")
    with measured(device) as night:
        night_texts, _ = sample_self_edits(
            host, work.night_docs, config, work.batch_self_edits, together=True
        )
        night_sets = [_nightly_sequences(work.night_docs, night_texts, config.format)]
        trained_night = train_many(host, night_sets, config.train, init=None)
        evaluate_many(host, [trained_night[0].state], work.night_probes, answer_tokens)
    return _Side(sample, one, k_phase, night, train_seconds), sets


def _run_reference(
    host: AdapterHost,
    spec: LoraSpec,
    work: _Workload,
    config: InnerLoopConfig,
    sets: Sequence[Sequence[str | ChatTurn]],
    on_phase: Callable[[str], None],
) -> _Side:
    """The plain reference's phases, on the training sequences ``sets`` of our k self-edits
    (the same workload, whatever the reference's own samples would have been)."""
    device, probes, k = host.device, work.probes, work.k
    answer_tokens = config.answer_max_tokens
    on_phase(f"reference: {k} self-edits, one call each")
    with measured(device) as sample:
        _, sample.tokens = sample_self_edits(host, [work.doc], config, k, together=False)
    on_phase("reference: the inner loop of one self-edit (model copy, padded batches)")
    with measured(device) as one:
        model, one.tokens = plain_train(host, spec, sets[0], config.train)
        plain_grade(host, model, probes, answer_tokens)
        del model
    on_phase(f"reference: {k} candidates one at a time")
    with measured(device) as k_phase:
        plain_grade(host, host.model.get_base_model(), probes, answer_tokens)  # the baseline
        train_seconds = 0.0
        for sequences in sets:
            t0 = time.perf_counter()
            model, tokens = plain_train(host, spec, sequences, config.train)
            train_seconds += time.perf_counter() - t0
            k_phase.tokens += tokens
            plain_grade(host, model, probes, answer_tokens)
            del model
    on_phase(f"reference: nightly batch of {len(work.night_docs)} documents")
    with measured(device) as night:
        texts, _ = sample_self_edits(
            host, work.night_docs, config, work.batch_self_edits, together=False
        )
        model, _ = plain_train(
            host, spec, _nightly_sequences(work.night_docs, texts, config.format), config.train
        )
        plain_grade(host, model, work.night_probes, answer_tokens)
        del model
    return _Side(sample, one, k_phase, night, train_seconds)


def _figures(ref: _Side, ours: _Side, k: int, documents: int, ceiling: float) -> list[Figure]:
    """The report's figures, reference beside ours; ``documents`` in the nightly batch."""
    return [
        Figure(
            "teacher tokens/s (k samples)",
            "tok/s",
            ref.sample.tokens_per_second,
            ours.sample.tokens_per_second,
            True,
        ),
        Figure(
            "training tokens/s",
            "tok/s",
            ref.train_rate,
            ours.train_rate,
            True,
            ours.train_rate / ceiling,
        ),
        Figure(
            "seconds per inner loop (1 self-edit)", "s", ref.one.seconds, ours.one.seconds, False
        ),
        Figure(f"seconds to evaluate k={k} candidates", "s", ref.k.seconds, ours.k.seconds, False),
        Figure(
            "seconds per document (sample k + evaluate)",
            "s",
            ref.sample.seconds + ref.k.seconds,
            ours.sample.seconds + ours.k.seconds,
            False,
        ),
        Figure(
            "seconds per document, nightly batch",
            "s",
            ref.night.seconds / documents,
            ours.night.seconds / documents,
            False,
        ),
        Figure("peak memory", "MiB", ref.peak_mib, ours.peak_mib, False),
    ]


def _notes(report: BenchReport, ref: _Side, ours: _Side, train: TrainConfig) -> list[str]:
    """What the figures need said beside them: the ceilings, how near each side trains to its
    own, and how much of the k-candidate phase was training."""
    k = report.k
    ceilings = (
        f"{report.ceiling:.0f} tok/s"
        if report.dtype == report.reference_dtype
        else f"{report.ceiling:.0f} tok/s in {report.dtype}, "
        f"{report.reference_ceiling:.0f} tok/s in {report.reference_dtype}"
    )
    stop = f", early stop at loss {train.stop_loss:g}" if train.stop_loss else ""
    return [
        f"training ceiling (LoRA, batch 20 x 64 tokens, no padding): {ceilings}",
        f"reference training at {ref.train_rate / report.reference_ceiling:.0%} of its ceiling, "
        f"ours at {ours.train_rate / report.ceiling:.0%} of ours",
        f"ours: training {ours.train_seconds:.1f} s of the {ours.k.seconds:.1f} s for k={k}; "
        f"reference: {ref.train_seconds:.1f} s of {ref.k.seconds:.1f} s",
        f"training tokens per candidate (all epochs run): "
        f"{ours.k.tokens // max(k, 1)} (ours, no padding{stop}) vs {ref.k.tokens // max(k, 1)} "
        "(reference, real tokens, every epoch)",
    ]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def format_report(report: BenchReport) -> str:
    dtypes = (
        report.dtype
        if report.dtype == report.reference_dtype
        else f"ours {report.dtype}, reference {report.reference_dtype}"
    )
    lines = [
        f"seal bench update: device {report.device}, {dtypes}, k={report.k}, "
        f"nightly batch of {report.documents} documents",
        "",
        f"{'figure':<44}{'reference':>12}{'ours':>12}{'gain':>8}{'of ceiling':>12}",
    ]
    for f in report.figures:
        share = f"{f.ceiling_share:.0%}" if f.ceiling_share is not None else ""
        lines.append(
            f"{f.name + ' (' + f.unit + ')':<44}{f.reference:>12.1f}{f.ours:>12.1f}"
            f"{f.gain:>7.2f}x{share:>12}"
        )
    lines.append("")
    lines.extend(f"- {note}" for note in report.notes)
    return "\n".join(lines)
