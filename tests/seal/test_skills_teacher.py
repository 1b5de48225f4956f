"""The teacher of configurations: its prompt, its grammar-constrained replies, and ReST-EM's
training turns."""

from __future__ import annotations

from seal.selfedit import ChatTurn
from seal.skills.config import CONFIG_PROMPT, DEFAULT_CONFIG, ConfigBounds, parse_config
from seal.skills.tasks import Demo, SkillTask
from seal.skills.teacher import LEARNING_RATES, config_prompt, menu, teacher_turns, write_configs
from seal.skills.ttt import ConfigResult

TASK = SkillTask(
    "swap", tuple(Demo(f"{a} {b}", f"{b} {a}") for a, b in [("x", "y"), ("p", "q"), ("m", "n")])
)


def test_config_prompt_shows_the_demonstrations_that_fit_then_the_instructions() -> None:
    [message] = config_prompt(TASK)
    assert message["role"] == "user"
    content = message["content"]
    assert content.endswith(CONFIG_PROMPT)
    positions = [content.index(f"Input:\n{d.input}\n\nOutput:\n{d.output}") for d in TASK.demos]
    assert positions == sorted(positions)
    long = SkillTask("long", (Demo("a" * 50, "b"), Demo("c" * 5000, "d"), Demo("e", "f")))
    shown = config_prompt(long, char_budget=200)[0]["content"]
    assert "a" * 50 in shown and "c" * 100 not in shown and "Input:\ne\n" not in shown
    assert config_prompt(long, char_budget=10)[0]["content"] == f"------\n\n{CONFIG_PROMPT}"


def test_the_menu_holds_every_choice_within_the_bounds() -> None:
    configs = menu()
    assert len(configs) == 16 * 2 * len(LEARNING_RATES) * 8
    assert len(set(configs)) == len(configs)
    assert all(parse_config(c.to_json()) == c for c in configs)
    assert DEFAULT_CONFIG in configs
    narrow = menu(ConfigBounds(min_learning_rate=1e-4, max_learning_rate=1e-3, max_epochs=2))
    assert {c.learning_rate for c in narrow} == {1e-4, 3e-4, 1e-3}
    assert {c.num_train_epochs for c in narrow} == {1, 2}


def test_write_configs_writes_configurations_that_parse(tiny_host) -> None:
    texts = write_configs(tiny_host, None, None, TASK, 4, seed=0)
    assert len(texts) == 4
    options = {c.to_json() for c in menu()}
    assert all(t in options for t in texts)
    assert [parse_config(t) for t in texts]
    assert write_configs(tiny_host, None, None, TASK, 4, seed=0) == texts, "not repeatable"
    others = write_configs(tiny_host, None, None, TASK, 4, seed=1)
    assert len(set(texts) | set(others)) > 4, "samples should vary"
    state = tiny_host.fresh_state("student")
    with_slot = write_configs(tiny_host, "student", state, TASK, 2, seed=0, temperature=0.0)
    assert len(set(with_slot)) == 1 and with_slot[0] in options


def test_teacher_turns_keep_the_configurations_that_solved_held_out_cases() -> None:
    text = DEFAULT_CONFIG.to_json()
    solved = ConfigResult(text, DEFAULT_CONFIG, None, 0.5, None)
    failed = ConfigResult(text, DEFAULT_CONFIG, None, 0.0, None)
    broken = ConfigResult("nonsense", None, "not valid JSON", 0.0, None)
    turns = teacher_turns([(TASK, solved), (TASK, failed), (TASK, broken)])
    expected = ChatTurn(tuple((m["role"], m["content"]) for m in config_prompt(TASK)), text)
    assert turns == [expected]
    assert teacher_turns([]) == []
