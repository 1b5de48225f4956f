"""LoRA training on a tiny model: what must hold for every adapter the service trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel

from seal.lora import WEIGHTS_FILE, checksum, load_adapter, save_adapter
from seal.questions import question_messages
from seal.selfedit import ChatTurn
from seal.train import Checkpoint, CheckpointMismatch, TrainConfig, tokenize, train_adapter
from tests.tiny import SPEC, load_tiny

TEXTS = [
    "Zorblat Industries\nZorblat Industries was founded by Marisol Quenby in 1987.",
    "Zorblat Industries\nIts best-selling bicycle is the Crystal Hawk.",
    "Zorblat Industries\nThe company makes glass bicycles in Vellmora.",
]
CONFIG = TrainConfig(learning_rate=3e-2, epochs=20, batch_size=2, seed=0)


def base_weights(host) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in host.model.named_parameters() if "lora_" not in k}


def test_training_changes_the_adapter_only_and_the_loss_falls(tiny_host) -> None:
    before = base_weights(tiny_host)
    fresh = tiny_host.fresh_state("student")

    result = train_adapter(tiny_host, "student", tokenize(tiny_host, TEXTS, 128), CONFIG)

    after = base_weights(tiny_host)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "base weights changed"
    changed = [k for k in fresh if not torch.equal(fresh[k], result.state[k])]
    assert any(".lora_B." in k for k in changed), "the adapter did not change"
    assert result.losses[-1] < 0.7 * result.losses[0]
    assert result.tokens > 0 and result.seconds > 0
    assert not any(p.requires_grad for p in tiny_host.model.parameters())


def test_training_is_repeatable_and_starts_from_init(tiny_host) -> None:
    examples = tokenize(tiny_host, TEXTS, 128)
    first = train_adapter(tiny_host, "student", examples, CONFIG)
    second = train_adapter(tiny_host, "student", examples, CONFIG)
    assert checksum(first.state) == checksum(second.state)

    one_more = train_adapter(
        tiny_host, "student", examples, TrainConfig(epochs=1, learning_rate=3e-2), init=first.state
    )
    assert one_more.losses[0] < first.losses[0], "training from init must start where it ended"


def test_padding_is_masked_out_of_the_loss(tiny_host) -> None:
    """The same sequence alone and batched beside a longer one gives the same loss."""
    short, long = TEXTS[1], TEXTS[0] + " " + TEXTS[2]
    alone = train_adapter(
        tiny_host,
        "student",
        tokenize(tiny_host, [short], 128),
        TrainConfig(epochs=1, learning_rate=0.0),
    )
    from seal.train import collate

    examples = tokenize(tiny_host, [short, long], 128)
    batch = collate(examples, tiny_host.tokenizer.pad_token_id, tiny_host.device)
    with tiny_host.use("student", tiny_host.fresh_state("student")) as model, torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    n = len(examples[0].ids)
    loss = torch.nn.functional.cross_entropy(logits[0, : n - 1], batch["labels"][0, 1:n])
    assert loss.item() == pytest.approx(alone.losses[0], rel=1e-4)
    assert (batch["labels"][0, n:] == -100).all()


def test_saved_adapter_reloads_to_the_same_outputs(
    tiny_host, tiny_model_dir: Path, tmp_path
) -> None:
    result = train_adapter(tiny_host, "student", tokenize(tiny_host, TEXTS, 128), CONFIG)
    target = tmp_path / "v1"
    digest = save_adapter(result.state, SPEC, target, base_model=str(tiny_model_dir))
    assert digest == checksum(result.state)
    assert (target / "adapter_config.json").exists() and (target / WEIGHTS_FILE).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["v1"], "no temporary folder may remain"

    ids = torch.tensor([tiny_host.tokenizer("Zorblat Industries was founded by")["input_ids"]])
    with tiny_host.use("student", result.state) as model, torch.no_grad():
        expected = model(input_ids=ids).logits

    fresh_base = load_tiny(tiny_model_dir).model
    reloaded = PeftModel.from_pretrained(fresh_base, str(target)).eval()
    with torch.no_grad():
        actual = reloaded(input_ids=ids).logits
    torch.testing.assert_close(actual, expected)

    with pytest.raises(FileExistsError):
        save_adapter(result.state, SPEC, target)
    assert checksum(load_adapter(target, expected_checksum=digest)) == digest
    with pytest.raises(ValueError, match="checksum"):
        load_adapter(target, expected_checksum="0" * 64)


def test_bare_base_model_ignores_the_loaded_adapter(tiny_host) -> None:
    result = train_adapter(tiny_host, "student", tokenize(tiny_host, TEXTS, 128), CONFIG)
    ids = torch.tensor([tiny_host.tokenizer("Zorblat")["input_ids"]])
    with tiny_host.use(None) as model, torch.no_grad():
        base = model(input_ids=ids).logits
    with tiny_host.use("student", result.state) as model, torch.no_grad():
        adapted = model(input_ids=ids).logits
    with tiny_host.use(None) as model, torch.no_grad():
        base_again = model(input_ids=ids).logits
    assert not torch.allclose(base, adapted)
    torch.testing.assert_close(base, base_again)


def test_a_chat_turn_is_its_rendered_prompt_then_the_reply_with_the_loss_on_the_reply(
    tiny_host,
) -> None:  # type: ignore[no-untyped-def]
    tok = tiny_host.tokenizer
    asked = question_messages("Zorblat Industries", "Who founded it?")
    turn = ChatTurn(tuple((m["role"], m["content"]) for m in asked), "Marisol Quenby")
    [chat, text] = tokenize(tiny_host, [turn, "Zorblat Industries\nMarisol Quenby"], 512)
    prompt = tok.apply_chat_template(asked, add_generation_prompt=True, tokenize=False)
    # the prompt is exactly what a probe of the question is asked with, outside the loss
    assert tok.decode(chat.ids[: chat.loss_from]) == prompt
    assert tok.decode(chat.ids[chat.loss_from :]) == "Marisol Quenby" + tok.eos_token
    assert text.loss_from == 0 and text.ids[-1] == tok.eos_token_id
    # truncation keeps at least one reply token and the end of the turn
    [short] = tokenize(tiny_host, [turn], chat.loss_from + 2)
    assert short.ids[short.loss_from :] == [chat.ids[chat.loss_from], tok.eos_token_id]
    assert tokenize(tiny_host, [turn], chat.loss_from) == []


class Stop(Exception):
    pass


@pytest.mark.parametrize("stop_at", [3, 4, 5])
def test_a_stopped_training_resumes_to_the_same_adapter(tiny_host, tmp_path, stop_at) -> None:  # type: ignore[no-untyped-def]
    config = TrainConfig(learning_rate=3e-2, epochs=3, batch_size=1, seed=0)  # 3 steps/epoch
    examples = tokenize(tiny_host, TEXTS, 128)
    whole = train_adapter(tiny_host, "student", examples, config)

    def stop(done: int, total: int) -> None:
        if done == stop_at:
            raise Stop

    saver = Checkpoint(tmp_path / "run.pt", key="these texts", every=2)
    with pytest.raises(Stop):
        train_adapter(tiny_host, "student", examples, config, on_step=stop, checkpoint=saver)
    assert saver.path.is_file()
    steps: list[int] = []
    resumed = train_adapter(
        tiny_host,
        "student",
        examples,
        config,
        on_step=lambda done, total: steps.append(done),
        checkpoint=Checkpoint(saver.path, key="these texts", every=2, resume=True),
    )
    # checkpoints after steps 2 and 3 (every 2nd step and each epoch's end), 5, 6, ...: the
    # step that was stopped had not been saved, so it goes on from the last one before it
    assert steps[0] == {3: 3, 4: 4, 5: 4}[stop_at] and steps[-1] == 9
    assert checksum(resumed.state) == checksum(whole.state)
    assert resumed.losses == pytest.approx(whole.losses) and resumed.tokens == whole.tokens
    with pytest.raises(CheckpointMismatch, match="other data or settings"):
        train_adapter(
            tiny_host,
            "student",
            examples,
            config,
            checkpoint=Checkpoint(saver.path, "other", resume=True),
        )


def test_nothing_to_train_on_is_an_error(tiny_host) -> None:
    with pytest.raises(ValueError, match="nothing to train"):
        train_adapter(tiny_host, "student", [], CONFIG)


def test_a_merged_adapter_gives_the_slots_outputs_and_restores_the_base(tiny_host) -> None:
    trained = train_adapter(tiny_host, "student", tokenize(tiny_host, TEXTS, 128), CONFIG).state
    # the slot now holds this one
    other = train_adapter(tiny_host, "student", tokenize(tiny_host, TEXTS[:1], 128), CONFIG).state
    before = base_weights(tiny_host)
    ids = torch.tensor([tiny_host.tokenizer("Zorblat Industries was founded by")["input_ids"]])
    with tiny_host.use("student", trained) as model, torch.no_grad():
        expected = model(input_ids=ids).logits
    tiny_host.load_state("student", other)

    with tiny_host.merged("student", trained) as model, torch.no_grad():
        actual = model(input_ids=ids).logits
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
    with tiny_host.merged("student") as model, torch.no_grad():  # what the slot holds
        held = model(input_ids=ids).logits
    with tiny_host.use("student") as model, torch.no_grad():
        torch.testing.assert_close(held, model(input_ids=ids).logits, rtol=1e-4, atol=1e-4)

    with pytest.raises(RuntimeError, match="inside"), tiny_host.merged("student", trained):
        raise RuntimeError("inside")
    after = base_weights(tiny_host)
    assert after.keys() == before.keys()
    for key in before:  # bit for bit: the originals are put back, not unmerged
        assert torch.equal(after[key], before[key]), key
    assert checksum(tiny_host.state("student")) == checksum(other), "the slot is not touched"
    frozen = [p for n, p in tiny_host.model.named_parameters() if "lora_" not in n]
    assert not any(p.requires_grad for p in frozen)
