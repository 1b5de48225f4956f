"""Many LoRA adapters trained and graded together on one shared base model.

The SEAL inner loop trains k adapters from the same starting point, one per self-edit, and
grades each on the same probes. Run one at a time, that is k small, badly batched passes over a
model that is mostly idle; here the k adapters are stacked along a leading dimension and run
side by side in the same forward and backward passes:

- the bare base model runs once per batch, and a forward hook on every LoRA-wrapped linear
  layer adds ``scale * x A_j^T B_j^T`` to the tokens owned by adapter j (contiguous spans of
  the flattened batch, so each adapter is one pair of plain matmuls, with no gather; the
  stack and its hooks are ``seal.adapter_stack``);
- training sequences are packed into rows (positions restart at 0 for each sequence, which
  makes attention block-diagonal), so no compute goes to padding;
- each adapter has its own loss (its mean token loss, as if it were trained alone) and its
  own AdamW moments and step count, so the result matches k separate runs with the same
  batches, and an adapter that has no batch left in a step is left untouched;
- an adapter whose epoch loss reaches ``TrainConfig.stop_loss`` has memorized its sequences
  and stops, as ``train_adapter`` would; the others train on without its tokens;
- memory is bounded: a step's rows run in passes of at most ``TrainConfig.step_tokens``
  tokens whose gradients add up to the same update, and the loss over the vocabulary is
  backpropagated a chunk of positions at a time (``vocab_loss_backward``);
- the adapters' weights are float32 and compute in the model's dtype (bf16 on a GPU or on a
  CPU with bf16 matrix units);
- greedy grading decodes the questions of all adapters in one batched ``generate``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from seal.adapter_stack import NO_ADAPTER, AdapterStack, Span
from seal.generation import FOLD_MIN_NEW_TOKENS, Generation, SampleConfig, generate
from seal.grading import Evaluation, Graded, Probe, is_correct
from seal.lora import STUDENT, AdapterHost, AdapterState
from seal.questions import question_messages
from seal.selfedit import ChatTurn
from seal.train import Example, TrainConfig, TrainResult, _batches, tokenize

T = TypeVar("T")


def _runs(owners: Sequence[int]) -> list[Span]:
    """Run-length spans of an owner list."""
    spans: list[Span] = []
    for pos, owner in enumerate(owners):
        if spans and spans[-1][0] == owner:
            spans[-1] = (owner, spans[-1][1], pos + 1)
        else:
            spans.append((owner, pos, pos + 1))
    return spans


@dataclass
class _Packed:
    input_ids: torch.Tensor
    position_ids: torch.Tensor
    spans: list[Span]
    predict_at: torch.Tensor
    """Flat positions whose next-token prediction enters the loss."""
    targets: torch.Tensor
    owners: torch.Tensor
    """The adapter each loss position belongs to."""


Row = list[tuple[int, Example]]
"""A packed row: (owner, sequence) pairs laid end to end."""


def pack_rows(batches: Sequence[tuple[int, Sequence[Example]]], width: int) -> list[Row]:
    """Each adapter's sequences laid into rows of at most ``width`` tokens (wider when one
    sequence is longer), filled in order, so each adapter owns a contiguous run of rows."""
    width = max([width, *(len(ex.ids) for _, batch in batches for ex in batch)])
    rows: list[Row] = [[]]
    used = 0
    for owner, batch in batches:
        for ex in batch:
            if used + len(ex.ids) > width:
                rows.append([])
                used = 0
            rows[-1].append((owner, ex))
            used += len(ex.ids)
    return [row for row in rows if row]


def _loss_start(ex: Example) -> int:
    """The first position whose token enters the loss (the first token has no prediction)."""
    return max(1, ex.loss_from)


def _row_tokens(row: Row) -> int:
    return sum(len(ex.ids) for _, ex in row)


CPU_STEP_TOKENS = 512
GPU_STEP_TOKENS = 2048


def default_step_tokens(device: torch.device) -> int:
    """Tokens per forward/backward pass when ``TrainConfig.step_tokens`` is None. On a CPU,
    passes of 512 tokens trained as fast as passes of 1024 and faster than 2048, with the
    least memory (docs/results/2026-11-23-training-pass-size.md); a GPU wants larger passes
    to stay busy."""
    return CPU_STEP_TOKENS if device.type == "cpu" else GPU_STEP_TOKENS


def pass_tokens(config: TrainConfig, device: torch.device) -> int:
    """The most tokens in one forward/backward pass: ``config.step_tokens``, or the device's
    default when it is None."""
    return config.step_tokens or default_step_tokens(device)


def passes(rows: Sequence[Row], max_tokens: int) -> list[list[Row]]:
    """Consecutive groups of rows, each padded to its widest row, of at most ``max_tokens``
    tokens (at least one row each): the forward/backward passes of one step."""
    groups: list[list[Row]] = []
    width = 0
    for row in rows:
        wider = max(width, _row_tokens(row))
        if groups and wider * (len(groups[-1]) + 1) <= max_tokens:
            groups[-1].append(row)
            width = wider
        else:
            groups.append([row])
            width = _row_tokens(row)
    return groups


def tensors(rows: Sequence[Row], pad_id: int, device: torch.device) -> _Packed:
    """The model inputs of packed rows: positions restart at 0 for each sequence; a row's
    trailing padding belongs to the adapter before it."""
    length = max(_row_tokens(row) for row in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), length), dtype=torch.long)
    owners_flat: list[int] = []
    predict_at: list[int] = []
    targets: list[int] = []
    owners: list[int] = []
    for r, row in enumerate(rows):
        col = 0
        for owner, ex in row:
            n = len(ex.ids)
            ids[r, col : col + n] = torch.tensor(ex.ids)
            positions[r, col : col + n] = torch.arange(n)
            for i in range(_loss_start(ex), n):
                predict_at.append(r * length + col + i - 1)
                targets.append(ex.ids[i])
                owners.append(owner)
            col += n
        positions[r, col:] = torch.arange(length - col)  # padding: a sequence of its own
        owners_flat.extend(o for o, ex in row for _ in ex.ids)
        owners_flat.extend([row[-1][0]] * (length - col))
    return _Packed(
        input_ids=ids.to(device),
        position_ids=positions.to(device),
        spans=_runs(owners_flat),
        predict_at=torch.tensor(predict_at, dtype=torch.long, device=device),
        targets=torch.tensor(targets, dtype=torch.long, device=device),
        owners=torch.tensor(owners, dtype=torch.long, device=device),
    )


def pack(
    batches: Sequence[tuple[int, Sequence[Example]]], width: int, pad_id: int, device: torch.device
) -> _Packed:
    """Pack each adapter's sequences into rows of at most ``width`` tokens, as one tensor
    batch (``pack_rows``, then ``tensors``)."""
    return tensors(pack_rows(batches, width), pad_id, device)


def vocab_loss_backward(
    lm_head: torch.nn.Linear,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    *,
    chunk: int = 512,
) -> torch.Tensor:
    """Backpropagate ``sum(weights * cross_entropy(lm_head(hidden), targets))`` a chunk of
    positions at a time, so only one chunk's vocabulary logits exist at once; returns the
    per-position losses (detached). The head's own weights are frozen.

    The gradient of the logits is written by hand, in place over the logits themselves
    (``softmax - one_hot``, times the weight): autograd's cross entropy would allocate and
    fill a zero gradient, a log-softmax and its gradient, each the chunk's size in float32,
    which on a CPU trained about 5% slower."""
    if hidden.shape[0] == 0:
        return targets.new_zeros(0, dtype=torch.float32)
    head, bias = lm_head.weight, lm_head.bias
    grads, losses = [], []
    with torch.no_grad():
        for piece, target, weight in zip(
            hidden.detach().split(chunk), targets.split(chunk), weights.split(chunk), strict=True
        ):
            logits = F.linear(piece, head, bias).float()
            logsumexp = torch.logsumexp(logits, dim=-1)
            rows = torch.arange(len(target), device=logits.device)
            losses.append(logsumexp - logits[rows, target])
            grad = logits.sub_(logsumexp[:, None]).exp_()  # the softmax, in place
            grad[rows, target] -= 1.0
            grad.mul_(weight[:, None])
            grads.append(grad.to(head.dtype) @ head)
    hidden.backward(torch.cat(grads))
    return torch.cat(losses)


def _causal_lm(host: AdapterHost) -> Any:
    """The transformers model under PEFT (``.model`` the decoder stack, ``.lm_head``)."""
    return host.model.get_base_model()


def train_examples_many(
    host: AdapterHost,
    example_sets: Sequence[Sequence[Example]],
    config: TrainConfig,
    *,
    init: AdapterState | None,
    slot: str = STUDENT,
    on_step: Callable[[int, int], None] | None = None,
) -> list[TrainResult]:
    """Train one adapter per example set, each from ``init``, all in the same passes.

    Adapter j sees exactly the batches that ``train_adapter`` would give it alone (same seed,
    same order, the same early stop); a step runs the current batch of every adapter that
    still has one, packed into rows, in as many forward/backward passes as
    ``config.step_tokens`` allows. ``TrainResult.seconds`` of each is its share (by tokens) of
    the joint time. ``on_step(done, total)`` reports steps; ``total`` shrinks when adapters
    stop early."""
    if not example_sets or any(not s for s in example_sets):
        raise ValueError("nothing to train on")
    k = len(example_sets)
    stack = AdapterStack(host, slot, [init] * k)
    params = [[p.requires_grad_(True) for p in stack.parameters(j)] for j in range(k)]
    # one AdamW per adapter (its own moments and step count); one with no batch in a step
    # is not stepped, exactly as if it were trained alone
    optimizers = [
        torch.optim.AdamW(p, lr=config.learning_rate, weight_decay=0.0, fused=True) for p in params
    ]
    rngs = [random.Random(config.seed) for _ in range(k)]
    torch.manual_seed(config.seed)
    pad_id = host.tokenizer.pad_token_id
    per_epoch = [math.ceil(len(s) / config.batch_size) for s in example_sets]
    results = [TrainResult(state={}) for _ in range(k)]
    training = list(range(k))
    lm = _causal_lm(host)
    step_tokens = pass_tokens(config, host.device)
    done = 0
    started = time.perf_counter()
    lm.train()
    try:
        for epoch in range(config.epochs):
            total = done + (config.epochs - epoch) * max(per_epoch[j] for j in training)
            plans = {
                j: _batches(list(example_sets[j]), config.batch_size, rngs[j]) for j in training
            }
            sums = torch.zeros(k, dtype=torch.float64)
            counts = torch.zeros(k, dtype=torch.float64)
            for step in range(max(len(p) for p in plans.values())):
                batch = [(j, plan[step]) for j, plan in plans.items() if step < len(plan)]
                rows = pack_rows(batch, config.pack_tokens)
                count = torch.zeros(k, dtype=torch.float64)
                for owner, ex in (pair for row in rows for pair in row):
                    count[owner] += max(0, len(ex.ids) - _loss_start(ex))
                # each adapter's mean token loss over the whole step, whichever pass holds it
                weight_of = (1.0 / count.clamp(min=1.0)).to(host.device, torch.float32)
                for group in passes(rows, step_tokens):
                    packed = tensors(group, pad_id, host.device)
                    with stack.applied("tokens", packed.spans):
                        hidden = lm.model(
                            input_ids=packed.input_ids,
                            position_ids=packed.position_ids,
                            use_cache=False,
                        ).last_hidden_state
                    hidden = hidden.reshape(-1, hidden.shape[-1])[packed.predict_at]
                    token_loss = vocab_loss_backward(
                        lm.lm_head, hidden, packed.targets, weight_of[packed.owners]
                    )
                    sums.index_add_(0, packed.owners.cpu(), token_loss.double().cpu())
                for j in (count > 0).nonzero().flatten().tolist():
                    optimizers[j].step()
                    optimizers[j].zero_grad(set_to_none=True)
                counts += count
                done += 1
                if on_step:
                    on_step(done, total)
            for j in list(training):
                results[j].losses.append(float(sums[j]) / max(float(counts[j]), 1.0))
                results[j].tokens += int(counts[j])
                if config.memorized(results[j].losses[-1]):
                    training.remove(j)  # memorized: its remaining epochs are skipped
            if not training:
                if on_step:
                    on_step(done, done)
                break
    finally:
        lm.eval()
        for own in params:
            for p in own:
                p.requires_grad_(False)
    seconds = time.perf_counter() - started
    all_tokens = sum(r.tokens for r in results) or 1
    for j, result in enumerate(results):
        result.seconds = seconds * result.tokens / all_tokens
        result.state = stack.state(j)
    return results


def train_many(
    host: AdapterHost,
    sequence_sets: Sequence[Sequence[str | ChatTurn]],
    config: TrainConfig,
    *,
    init: AdapterState | None,
    slot: str = STUDENT,
    on_step: Callable[[int, int], None] | None = None,
) -> list[TrainResult]:
    """One adapter per set of training sequences (loss on every token), each from ``init``."""
    example_sets = [tokenize(host, s, config.max_seq_len) for s in sequence_sets]
    return train_examples_many(host, example_sets, config, init=init, slot=slot, on_step=on_step)


def generate_many(
    host: AdapterHost,
    requests: Sequence[tuple[AdapterState | None, Sequence[list[dict[str, str]]]]],
    config: SampleConfig,
    *,
    slot: str = STUDENT,
) -> list[list[Generation]]:
    """Decode each request's conversations with its adapter (None: the bare base model), all
    requests in the same batches."""
    states = [s for s, _ in requests if s is not None]
    sizes = [len(convs) for _, convs in requests]
    one = len(states) == len(requests) and all(s is states[0] for s in states)
    if one and config.max_new_tokens >= FOLD_MIN_NEW_TOKENS:
        # one adapter for every row, and replies long enough to pay for folding it into the
        # weights (``host.merged``): no hooks, and the slot itself is left as it was
        every = [c for _, convs in requests for c in convs]
        return split(generate(host, every, config, slot=slot, state=states[0]), sizes)
    stack = AdapterStack(host, slot, states) if states else None
    owners: list[int] = []
    conversations: list[list[dict[str, str]]] = []
    index = 0
    for state, convs in requests:
        owner = NO_ADAPTER
        if state is not None:
            owner, index = index, index + 1
        owners.extend([owner] * len(convs))
        conversations.extend(convs)

    @contextmanager
    def per_chunk(start: int, end: int) -> Iterator[None]:
        if stack is None:
            yield
            return
        with stack.applied("rows", _runs(owners[start:end])):
            yield

    flat = generate(host, conversations, config, slot=None, per_chunk=per_chunk)
    return split(flat, sizes)


def split(flat: Sequence[T], sizes: Sequence[int]) -> list[list[T]]:
    """``flat`` cut back into consecutive pieces of ``sizes`` items (results of requests that
    ran in the same batches)."""
    out: list[list[T]] = []
    at = 0
    for size in sizes:
        out.append(list(flat[at : at + size]))
        at += size
    return out


def evaluate_many(
    host: AdapterHost,
    states: Sequence[AdapterState | None],
    probes: Sequence[Probe],
    max_new_tokens: int,
    *,
    slot: str = STUDENT,
    batch_size: int = 32,
) -> list[Evaluation]:
    """Grade each adapter state (None: the bare base model) on the same probes, greedily, all
    states' questions decoded in the same batches."""
    if not probes:
        return [Evaluation([]) for _ in states]
    questions = [question_messages(p.title, p.qa.question) for p in probes]
    config = SampleConfig(max_new_tokens=max_new_tokens, temperature=0.0, batch_size=batch_size)
    answers = generate_many(host, [(s, questions) for s in states], config, slot=slot)
    return [
        Evaluation(
            [
                Graded(p, a.text, is_correct(a.text, p.qa.answer))
                for p, a in zip(probes, rows, strict=True)
            ]
        )
        for rows in answers
    ]
