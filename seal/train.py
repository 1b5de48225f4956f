"""The inner loop's weight update: LoRA fine-tuning of one adapter slot on text sequences."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seal.lora import AdapterHost, AdapterState
from seal.selfedit import ChatTurn


@dataclass(frozen=True)
class TrainConfig:
    """How an adapter is trained (paper: lr 1e-3, 10 epochs, batch 1 for students)."""

    learning_rate: float = 1e-3
    """AdamW learning rate, constant."""
    epochs: int = 10
    """Passes over the sequences."""
    batch_size: int = 4
    """Sequences per optimizer step; batches group sequences of similar length."""
    max_seq_len: int = 512
    """Longer sequences are truncated."""
    seed: int = 0
    """Seeds the batch order, so a run is repeatable."""
    pack_tokens: int = 256
    """Row width when sequences are packed (``seal.multi``): a step's sequences share rows of
    this many tokens instead of being padded to the longest."""
    step_tokens: int | None = None
    """Most tokens in one forward/backward pass (``seal.multi``): a step whose packed rows hold
    more runs as several passes whose gradients add up to the same update, so memory stays
    bounded however many adapters train together. None: ``seal.multi.default_step_tokens`` of
    the device (512 on a CPU, 2048 on a GPU)."""
    stop_loss: float = 0.0
    """An adapter stops after the first epoch whose mean token loss is at or below this: it has
    memorized its sequences, and more epochs only cost time (0: always every epoch)."""

    def memorized(self, epoch_loss: float) -> bool:
        """Whether an adapter with this epoch loss stops (``stop_loss``)."""
        return self.stop_loss > 0 and epoch_loss <= self.stop_loss


@dataclass
class TrainResult:
    state: AdapterState
    losses: list[float] = field(default_factory=list)
    """Mean token loss of each epoch run (fewer than configured when it stopped early)."""
    tokens: int = 0
    """Tokens that entered the loss, all epochs."""
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Example:
    """A tokenized training sequence: ``loss_from`` marks where the loss starts."""

    ids: list[int]
    loss_from: int = 0


def tokenize(host: AdapterHost, texts: Sequence[str | ChatTurn], max_len: int) -> list[Example]:
    """Each raw text + EOS, the loss on every token (continued pre-training); each chat turn as
    its rendered prompt + reply + EOS, the loss on the reply and EOS."""
    tok = host.tokenizer
    eos = tok.eos_token_id
    examples = []
    for text in texts:
        if isinstance(text, ChatTurn):
            messages = [{"role": role, "content": content} for role, content in text.messages]
            prompt = str(
                tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            )
            prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            reply_ids = tok(text.reply, add_special_tokens=False)["input_ids"]
            ids = (prompt_ids + reply_ids)[: max_len - 1]
            if len(ids) > len(prompt_ids):
                examples.append(Example(ids=[*ids, eos], loss_from=len(prompt_ids)))
            continue
        ids = tok(text, add_special_tokens=False)["input_ids"][: max_len - 1]
        examples.append(Example(ids=[*ids, eos]))
    return examples


def _batches(examples: list[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Batches of similar length (little padding), in a shuffled order."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].ids), i))
    batches = [[examples[i] for i in order[j : j + size]] for j in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def collate(batch: list[Example], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    width = max(len(ex.ids) for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    for row, ex in enumerate(batch):
        n = len(ex.ids)
        ids[row, :n] = torch.tensor(ex.ids)
        mask[row, :n] = 1
        labels[row, ex.loss_from : n] = ids[row, ex.loss_from : n]  # padding stays out of the loss
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


@dataclass(frozen=True)
class Checkpoint:
    """Where ``train_adapter`` keeps its progress: the adapter, the optimizer, the batch
    order's random state and the epoch's sums, saved every ``every`` steps and at each epoch's
    end (written whole, then renamed into place). With ``resume``, training goes on from the
    saved step, exactly as it would have gone on unstopped; ``key`` (what is being trained:
    the data and the settings) must match the saved one."""

    path: Path
    key: str
    every: int = 25
    resume: bool = False


class CheckpointMismatch(ValueError):
    """A checkpoint saved by the training of other data or settings."""


def _save_checkpoint(checkpoint: Checkpoint, payload: dict[str, Any]) -> None:
    checkpoint.path.parent.mkdir(parents=True, exist_ok=True)
    partial = checkpoint.path.with_name(checkpoint.path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, checkpoint.path)


def _load_checkpoint(checkpoint: Checkpoint | None) -> dict[str, Any] | None:
    if checkpoint is None or not checkpoint.resume or not checkpoint.path.is_file():
        return None
    saved = torch.load(checkpoint.path, weights_only=False)
    if saved.get("key") != checkpoint.key:
        raise CheckpointMismatch(
            f"{checkpoint.path} holds the training of other data or settings; resume with the "
            "same command, or start afresh without resuming"
        )
    return saved


def train_adapter(
    host: AdapterHost,
    slot: str,
    examples: Sequence[Example],
    config: TrainConfig,
    *,
    init: AdapterState | None = None,
    on_step: Callable[[int, int], None] | None = None,
    checkpoint: Checkpoint | None = None,
) -> TrainResult:
    """Fine-tune ``slot`` starting from ``init`` (a fresh adapter when None); the base model
    and every other slot stay unchanged. ``on_step(done, total)`` reports progress; a
    ``checkpoint`` makes a long training resumable."""
    if not examples:
        raise ValueError("nothing to train on")
    saved = _load_checkpoint(checkpoint)
    host.load_state(slot, saved["state"] if saved else init)
    params = host.trainable_parameters(slot)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    pad_id = host.tokenizer.pad_token_id
    per_epoch = math.ceil(len(examples) / config.batch_size)
    total = config.epochs * per_epoch
    result = TrainResult(state={})
    first_epoch, first_step, sums = 0, 0, (0.0, 0)
    if saved:
        optimizer.load_state_dict(saved["optimizer"])
        rng.setstate(saved["rng"])
        torch.set_rng_state(saved["torch_rng"])
        result.losses, result.tokens = list(saved["losses"]), int(saved["tokens"])
        first_epoch, first_step, sums = saved["epoch"], saved["step"], tuple(saved["sums"])
    started = time.perf_counter() - (saved["seconds"] if saved else 0.0)
    done = first_epoch * per_epoch + first_step
    stopped = bool(result.losses) and config.memorized(result.losses[-1]) and first_step == 0

    def save(epoch: int, step: int, epoch_rng: object, epoch_sums: tuple[float, int]) -> None:
        if checkpoint is None:
            return
        _save_checkpoint(
            checkpoint,
            {
                "key": checkpoint.key,
                "state": host.state(slot),
                "optimizer": optimizer.state_dict(),
                "rng": epoch_rng,
                "torch_rng": torch.get_rng_state(),
                "losses": result.losses,
                "tokens": result.tokens,
                "epoch": epoch,
                "step": step,
                "sums": list(epoch_sums),
                "seconds": time.perf_counter() - started,
            },
        )

    with host.use(slot) as model:
        model.train()
        try:
            for epoch in range(first_epoch, config.epochs):
                if stopped:
                    break
                epoch_rng = rng.getstate()  # the epoch's batch order is drawn from it
                epoch_loss, epoch_tokens = sums if epoch == first_epoch else (0.0, 0)
                batches = _batches(list(examples), config.batch_size, rng)
                start = first_step if epoch == first_epoch else 0
                for step, batch in enumerate(batches):
                    if step < start:
                        continue
                    inputs = collate(batch, pad_id, host.device)
                    loss = model(**inputs).loss
                    loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    n = int((inputs["labels"][:, 1:] != -100).sum())
                    epoch_loss += loss.item() * n
                    epoch_tokens += n
                    done += 1
                    if on_step:
                        on_step(done, total)
                    if checkpoint is not None and (step + 1) % checkpoint.every == 0:
                        save(epoch, step + 1, epoch_rng, (epoch_loss, epoch_tokens))
                result.losses.append(epoch_loss / max(epoch_tokens, 1))
                result.tokens += epoch_tokens
                save(epoch + 1, 0, rng.getstate(), (0.0, 0))
                if config.memorized(result.losses[-1]):
                    if on_step:
                        on_step(done, done)  # the remaining epochs are skipped
                    break
        finally:
            model.eval()
            for param in params:
                param.requires_grad_(False)
    result.seconds = time.perf_counter() - started
    result.state = host.state(slot)
    return result
