"""Parsing and clamping of the few-shot self-edit: the teacher's text is untrusted."""

from __future__ import annotations

import json

import pytest

from seal.skills.config import (
    ALL_TOKENS,
    DEFAULT_CONFIG,
    OUTPUT_TOKENS,
    ConfigBounds,
    ConfigError,
    SkillConfig,
    config_of,
    parse_config,
)

PAPER_STYLE = """{
  "data_generation": {
    "use_basic_augmentations": true,
    "use_size_augmentations": false,
    "use_chain_augmentations": true,
    "use_repeat_augmentations": false
  },
  "training": {
    "strategy": "train_using_all_tokens",
    "learning_rate": 0.0001,
    "num_train_epochs": 3
  }
}"""

EXPECTED = SkillConfig(
    use_basic_augmentations=True,
    use_size_augmentations=False,
    use_chain_augmentations=True,
    use_repeat_augmentations=False,
    strategy=ALL_TOKENS,
    learning_rate=1e-4,
    num_train_epochs=3,
)


def with_(**changes: object) -> str:
    """PAPER_STYLE with some values replaced (``section.key=value``; a value of ``...`` drops
    the key)."""
    data = json.loads(PAPER_STYLE)
    for path, value in changes.items():
        section, key = path.split("__")
        if value is ...:
            del data[section][key]
        else:
            data[section][key] = value
    return json.dumps(data)


def test_a_valid_configuration_parses() -> None:
    assert parse_config(PAPER_STYLE) == EXPECTED


def test_to_json_and_as_dict_round_trip() -> None:
    assert parse_config(EXPECTED.to_json()) == EXPECTED
    assert parse_config(DEFAULT_CONFIG.to_json()) == DEFAULT_CONFIG
    assert config_of(EXPECTED.as_dict()) == EXPECTED
    assert EXPECTED.as_dict() == json.loads(PAPER_STYLE)
    assert DEFAULT_CONFIG.strategy in (ALL_TOKENS, OUTPUT_TOKENS)


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{PAPER_STYLE}\n```",
        f"```\n{PAPER_STYLE}\n```",
        f"  \n```JSON\n{PAPER_STYLE}\n```\n\n",
        f"\n\n   {PAPER_STYLE}  \n",
    ],
    ids=["json-fence", "bare-fence", "fence-with-whitespace", "whitespace"],
)
def test_surrounding_whitespace_and_one_markdown_fence_are_accepted(text: str) -> None:
    assert parse_config(text) == EXPECTED


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{PAPER_STYLE}\nThis configuration favours rotations.", "text after the JSON object"),
        (f"{PAPER_STYLE}\n{PAPER_STYLE}", "text after the JSON object"),
        (f"```json\n{PAPER_STYLE}\n```\nHope this helps!", "not valid JSON"),
        (f"Here is the configuration:\n{PAPER_STYLE}", "not valid JSON"),
        (f"```json\n{PAPER_STYLE}\n```\n```json\n{PAPER_STYLE}\n```", "text after the JSON"),
    ],
    ids=["explanation-after", "two-objects", "text-after-fence", "text-before", "two-fences"],
)
def test_text_around_the_object_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ('{"data_generation": {', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"train_using_all_tokens"', "must be a JSON object"),
        (with_(training__learning_rate=...), "'training' lacks 'learning_rate'"),
        (with_(data_generation__use_size_augmentations=...), "lacks 'use_size_augmentations'"),
        (with_(data_generation__use_rotation=True), "unknown 'use_rotation'"),
        (
            json.dumps({**json.loads(PAPER_STYLE), "notes": "x"}),
            "the configuration has unknown 'notes'",
        ),
        (json.dumps({"training": json.loads(PAPER_STYLE)["training"]}), "lacks 'data_generation'"),
        (json.dumps({**json.loads(PAPER_STYLE), "training": [1]}), "'training' must be an object"),
        (with_(data_generation__use_basic_augmentations="true"), "must be true or false"),
        (with_(data_generation__use_basic_augmentations=1), "must be true or false"),
        (with_(data_generation__use_basic_augmentations=None), "must be true or false"),
        (with_(training__strategy="train_using_some_tokens"), "strategy must be"),
        (with_(training__strategy=None), "strategy must be"),
        (with_(training__learning_rate="1e-4"), "learning_rate must be a number"),
        (with_(training__learning_rate=True), "learning_rate must be a number"),
        (with_(training__learning_rate=0), "learning_rate must be > 0"),
        (with_(training__learning_rate=-0.001), "learning_rate must be > 0"),
        (PAPER_STYLE.replace("0.0001", "NaN"), "NaN is not a JSON number"),
        (PAPER_STYLE.replace("0.0001", "Infinity"), "Infinity is not a JSON number"),
        (PAPER_STYLE.replace("0.0001", "1e999"), "learning_rate must be a number"),
        (with_(training__num_train_epochs=3.0), "num_train_epochs must be an integer"),
        (with_(training__num_train_epochs="3"), "num_train_epochs must be an integer"),
        (with_(training__num_train_epochs=False), "num_train_epochs must be an integer"),
        (with_(training__num_train_epochs=0), "num_train_epochs must be > 0"),
        (with_(training__num_train_epochs=-2), "num_train_epochs must be > 0"),
        (
            PAPER_STYLE.replace('"num_train_epochs": 3', '"num_train_epochs": 3, "strategy": "x"'),
            "'strategy' appears twice",
        ),
        (PAPER_STYLE.replace("true", "True", 1), "not valid JSON"),
        (PAPER_STYLE.replace('"strategy"', "'strategy'"), "not valid JSON"),
    ],
)
def test_each_kind_of_invalid_configuration_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text)


def test_config_of_applies_the_same_rules() -> None:
    with pytest.raises(ConfigError, match="must be a JSON object"):
        config_of(["not", "a", "dict"])
    bad = json.loads(with_(training__num_train_epochs=2.5))
    with pytest.raises(ConfigError, match="num_train_epochs must be an integer"):
        config_of(bad)


@pytest.mark.parametrize(
    ("rate", "epochs", "expected_rate", "expected_epochs"),
    [
        (1.0, 100, 1e-2, 8),
        (1e-9, 1, 1e-5, 1),
        (1e-3, 8, 1e-3, 8),
        (1e-5, 9, 1e-5, 8),
        (5, 4, 1e-2, 4),
    ],
)
def test_out_of_bounds_values_are_clamped(
    rate: float, epochs: int, expected_rate: float, expected_epochs: int
) -> None:
    config = parse_config(with_(training__learning_rate=rate, training__num_train_epochs=epochs))
    assert config.learning_rate == expected_rate
    assert config.num_train_epochs == expected_epochs
    assert isinstance(config.learning_rate, float)


def test_other_bounds_clamp_to_themselves() -> None:
    bounds = ConfigBounds(
        min_learning_rate=1e-4, max_learning_rate=1e-3, min_epochs=2, max_epochs=3
    )
    low = parse_config(with_(training__learning_rate=1e-6, training__num_train_epochs=1), bounds)
    high = parse_config(with_(training__learning_rate=0.5, training__num_train_epochs=7), bounds)
    assert (low.learning_rate, low.num_train_epochs) == (1e-4, 2)
    assert (high.learning_rate, high.num_train_epochs) == (1e-3, 3)


def test_a_trusted_default_is_within_the_default_bounds() -> None:
    bounds = ConfigBounds()
    assert bounds.min_learning_rate <= DEFAULT_CONFIG.learning_rate <= bounds.max_learning_rate
    assert bounds.min_epochs <= DEFAULT_CONFIG.num_train_epochs <= bounds.max_epochs
