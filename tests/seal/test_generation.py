"""Decoding on the tiny model: greedy and seeded sampling repeat, limits and stops hold."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from seal import generation
from seal.generation import SampleConfig, generate
from seal.questions import question_messages
from tests.seal.teaching import speaking_host, teach

CHATS = [
    [{"role": "user", "content": "Who founded Zorblat Industries?"}],
    [{"role": "user", "content": "Tell me everything about glass bicycles made in Vellmora."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
]
GREEDY = SampleConfig(max_new_tokens=6, batch_size=2)
SAMPLED = SampleConfig(max_new_tokens=6, temperature=1.0, top_p=0.95, seed=7, batch_size=4)


def prompt_length(host, chat, prefix: str = "") -> int:
    text = host.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    return len(host.tokenizer(text + prefix, add_special_tokens=False)["input_ids"])


def test_greedy_decoding_repeats(tiny_host) -> None:
    first = generate(tiny_host, CHATS, GREEDY)
    second = generate(tiny_host, CHATS, GREEDY)
    assert len(first) == len(CHATS)
    assert first == second
    assert len({g.text for g in first}) == len(CHATS), "different prompts, different replies"


def test_prompt_tokens_count_each_unpadded_prompt(tiny_host) -> None:
    batched = generate(tiny_host, CHATS, SampleConfig(max_new_tokens=2, batch_size=3))
    assert [g.prompt_tokens for g in batched] == [prompt_length(tiny_host, c) for c in CHATS]


def test_max_new_tokens_bounds_a_reply_without_eos(tiny_host) -> None:
    """The tiny model never emits EOS (see teaching.speaking_host), so it runs to the limit."""
    for n in (1, 5):
        for g in generate(tiny_host, CHATS, SampleConfig(max_new_tokens=n)):
            assert g.completion_tokens == n
            assert g.finish_reason == "length"


def test_sampling_with_a_seed_repeats(tiny_host) -> None:
    first = generate(tiny_host, CHATS, SAMPLED)
    assert generate(tiny_host, CHATS, SAMPLED) == first
    other = generate(tiny_host, CHATS, replace(SAMPLED, seed=8))
    assert [g.text for g in other] != [g.text for g in first]
    assert [g.text for g in first] != [g.text for g in generate(tiny_host, CHATS, GREEDY)]


def test_a_vanishing_temperature_decodes_greedily(tiny_host) -> None:
    """A denormal temperature (as a fuzzer sends) would divide the logits into ``inf``."""
    greedy = generate(tiny_host, CHATS, GREEDY)
    for temperature in (5e-324, generation.MIN_SAMPLING_TEMPERATURE / 2):
        config = replace(GREEDY, temperature=temperature, top_p=5e-324, seed=3)
        assert generate(tiny_host, CHATS, config) == greedy


def test_k_samples_per_prompt_come_back_grouped_in_order(tiny_host) -> None:
    chats = CHATS[:2]
    lengths = [prompt_length(tiny_host, c) for c in chats]
    assert lengths[0] != lengths[1]
    for batch_size in (8, 3, 1):  # both prompts in one batch; one prompt per batch
        config = replace(SAMPLED, batch_size=batch_size)
        out = generate(tiny_host, chats, config, num_return_sequences=3)
        assert [g.prompt_tokens for g in out] == [lengths[0]] * 3 + [lengths[1]] * 3
        assert len({g.text for g in out[:3]}) == 3, "k samples of one prompt must differ"


def test_prefix_primes_the_reply_but_is_not_returned(tiny_host) -> None:
    chat = CHATS[:1]
    prefix = "Zqx Vorpal:"
    plain = generate(tiny_host, chat, GREEDY)[0]
    primed = generate(tiny_host, chat, GREEDY, prefix=prefix)[0]
    assert primed.prompt_tokens == prompt_length(tiny_host, chat[0], prefix)
    assert primed.prompt_tokens > plain.prompt_tokens
    assert primed.text != plain.text, "the prefix must reach the model"
    assert prefix not in primed.text and not primed.text.startswith("Zqx")
    assert primed.completion_tokens == GREEDY.max_new_tokens


def test_eos_ends_a_reply_and_stop_strings_cut_it(tiny_model_dir) -> None:
    host = speaking_host(tiny_model_dir)
    chat = question_messages("Zorblat Industries", "Who founded Zorblat Industries?")
    reply = "Marisol Quenby founded it in 1987."
    state = teach(host, "student", chat, reply)
    n_reply = len(host.tokenizer(reply, add_special_tokens=False)["input_ids"])
    config = SampleConfig(max_new_tokens=32)

    [done] = generate(host, [chat], config, slot="student", state=state)
    assert done.text == reply
    assert done.finish_reason == "stop"
    assert done.completion_tokens == n_reply + 1, "the EOS token counts, nothing after it"

    [cut] = generate(host, [chat], SampleConfig(max_new_tokens=3), slot="student", state=state)
    assert cut.finish_reason == "length" and cut.completion_tokens == 3
    assert reply.startswith(cut.text) and len(cut.text) < len(reply)

    [stopped] = generate(
        host, [chat], config, slot="student", state=state, stop=["xyz", " in 19", "it"]
    )
    assert stopped.text == "Marisol Quenby founded"
    assert stopped.finish_reason == "stop"

    [unstopped] = generate(host, [chat], config, slot="student", state=state, stop=["", "zzz"])
    assert unstopped.text == reply

    [base] = generate(host, [chat], config)
    assert base.text != reply and base.finish_reason == "length"


def test_an_adapter_folded_into_the_weights_replies_as_its_slot_does(
    tiny_model_dir, monkeypatch
) -> None:
    host = speaking_host(tiny_model_dir)
    taught = teach(host, "student", CHATS[0], "Marisol Quenby founded it in 1987.")
    config = SampleConfig(max_new_tokens=generation.FOLD_MIN_NEW_TOKENS, batch_size=3)
    folds: list[str] = []
    merged = host.merged
    monkeypatch.setattr(host, "merged", lambda *a, **kw: folds.append(a[0]) or merged(*a, **kw))

    folded = generate(host, CHATS, config, slot="student", state=taught)
    assert folds == ["student"]
    monkeypatch.setattr(generation, "FOLD_MIN_NEW_TOKENS", config.max_new_tokens + 1)
    in_slot = generate(host, CHATS, config, slot="student", state=taught)
    assert folds == ["student"], "a shorter reply than the threshold runs the slot"
    assert [g.text for g in folded] == [g.text for g in in_slot]
    assert folded[0].text.startswith("Marisol Quenby")


class _Head(nn.Module):
    def __init__(self, bias: bool) -> None:
        super().__init__()
        self.head = nn.Linear(16, 40, bias=bias)

    def get_output_embeddings(self) -> nn.Linear:
        return self.head


def test_a_narrow_head_computes_what_f_linear_does_and_is_put_back() -> None:
    torch.manual_seed(0)
    for bias in (False, True):
        model = _Head(bias)
        few, many = torch.randn(5, 1, 16), torch.randn(generation.NARROW_ROWS + 1, 16)
        with torch.inference_mode():
            expected = model.head(few), model.head(many)
            with generation.narrow_head(model):
                assert "forward" in vars(model.head)
                got = model.head(few), model.head(many)
        assert "forward" not in vars(model.head)
        for a, b in zip(got, expected, strict=True):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b)
        with generation.narrow_head(model):  # with gradients: the plain layer, and its graph
            x = torch.randn(3, 16, requires_grad=True)
            model.head(x).sum().backward()
        assert x.grad is not None and model.head.weight.grad is not None


def test_decoding_runs_the_narrow_head_for_few_rows_and_replies_the_same(
    tiny_host, monkeypatch
) -> None:
    head = tiny_host.model.get_output_embeddings()
    narrow_rows: list[int] = []

    def spy(module, args, output) -> None:
        if "forward" in vars(module) and args[0].numel() // args[0].shape[-1] <= 2:
            narrow_rows.append(args[0].shape[0])

    handle = head.register_forward_hook(spy)
    try:
        narrow = generate(tiny_host, CHATS, GREEDY)
        assert narrow_rows, "decoding steps of two rows took the narrow head"
        monkeypatch.setattr(generation, "NARROW_ROWS", 0)
        plain = generate(tiny_host, CHATS, GREEDY)
    finally:
        handle.remove()
    assert narrow == plain
    assert "forward" not in vars(head)


def test_k_samples_of_a_prompt_share_one_prefill_and_sample_as_generate_does(
    tiny_host, monkeypatch
) -> None:
    config = replace(SAMPLED, batch_size=9)
    embed = tiny_host.model.get_input_embeddings()
    shapes: list[tuple[int, int]] = []
    handle = embed.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    try:
        once = generate(tiny_host, CHATS, config, num_return_sequences=3)
        prefill_rows, prefill_tokens = shapes[0]
        assert prefill_rows == len(CHATS), "every prompt once"
        assert shapes[1:] == [(3 * len(CHATS), 1)] * SAMPLED.max_new_tokens
        shapes.clear()
        monkeypatch.setattr(
            generation,
            "_generate_from_one_prefill",
            lambda model, enc, copies, kw: model.generate(**enc, **kw),
        )
        per_copy = generate(tiny_host, CHATS, config, num_return_sequences=3)
    finally:
        handle.remove()
    assert shapes[0] == (3 * len(CHATS), prefill_tokens + 1), (
        "generate itself prefills every copy, with the last prompt token that ours left over"
    )
    assert once == per_copy
