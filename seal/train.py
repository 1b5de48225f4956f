"""The inner loop's weight update: LoRA fine-tuning of one adapter slot on text sequences."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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


def train_adapter(
    host: AdapterHost,
    slot: str,
    examples: Sequence[Example],
    config: TrainConfig,
    *,
    init: AdapterState | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Fine-tune ``slot`` starting from ``init`` (a fresh adapter when None); the base model
    and every other slot stay unchanged. ``on_step(done, total)`` reports progress."""
    if not examples:
        raise ValueError("nothing to train on")
    host.load_state(slot, init)
    params = host.trainable_parameters(slot)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    pad_id = host.tokenizer.pad_token_id
    total = config.epochs * math.ceil(len(examples) / config.batch_size)
    result = TrainResult(state={})
    started = time.perf_counter()
    done = 0
    with host.use(slot) as model:
        model.train()
        try:
            for _ in range(config.epochs):
                epoch_loss, epoch_tokens = 0.0, 0
                for batch in _batches(list(examples), config.batch_size, rng):
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
                result.losses.append(epoch_loss / max(epoch_tokens, 1))
                result.tokens += epoch_tokens
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
