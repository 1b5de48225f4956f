"""docs/configuration.md, generated from :class:`service.settings.Settings`.

``python -m sealctl.docgen`` (``make docs``) writes the page; ``--check`` exits 1 when the
committed page differs from what the settings say, so a setting cannot change without its
documentation. Each setting's line comes from its ``Field``: the environment variable, the
type with its bounds, the default and the description.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo

from service.settings import Settings

#: The page this module writes.
CONFIGURATION_MD = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

STALE = "docs/configuration.md is stale: run `make docs`"

#: Words for the few fields whose ``Field`` has no description yet. Better in
#: service/settings.py; a description there replaces the one here.
_PREAMBLE = """\
# Configuration

<!-- Generated from service/settings.py by `make docs` (python -m sealctl.docgen).
     Do not edit by hand: change the Settings class, then run `make docs`. -->

*Generated from `Settings` in [service/settings.py](../service/settings.py) by `make docs`
(`python -m sealctl.docgen`); do not edit it by hand. A test fails when it is stale.*

## How settings are read

One settings object, `Settings` in `service/settings.py`, is read by the api, the worker, the
beat and the `seal` CLI. Each setting is an environment variable `SEAL_<NAME>` or a line
`SEAL_<NAME>=value` in a `.env` file in the working directory; the environment wins over
`.env`, and both over the default. Names are not case-sensitive. Other variables are
ignored, so a misspelled name is ignored too rather than refused.

- **Lists** are JSON: `SEAL_LORA_TARGETS='["q_proj","v_proj"]'`. **Booleans**: `true` or
  `false` (also `1`/`0`, `yes`/`no`). **Unset** means the setting is absent; its description
  says what is used then.
- A value outside its bounds, or not one of its choices, stops the process when it starts,
  with an error that names the setting. So do `SEAL_JOB_STALE_AFTER_S` under twice
  `SEAL_JOB_HEARTBEAT_S` (a live job would look dead), and, with
  `SEAL_ENVIRONMENT=production`, an admin key that is missing, a placeholder (`changeme`,
  `secret`, `admin`, ...) or shorter than 16 characters.
- Each process reads its settings once, when it starts: restart it after a change.
- The api and the workers load the same student model, so give them the same model and LoRA
  settings.
- Paths that are unset are derived from `SEAL_DATA_DIR` (`var` by default): the SQLite store
  `DATA_DIR/seal.db`, the broker `DATA_DIR/broker.db`, adapters under `DATA_DIR/adapters`,
  the converted model under `DATA_DIR/models` and, in development, the admin key in
  `DATA_DIR/admin_key`. What lies where: [architecture.md](architecture.md#the-data-directory).

## Two set-ups

- **Embedded** (the defaults, `make run`): SQLite as the store, Celery's SQLAlchemy
  transport over SQLite as the broker, adapters in a local folder; no server is needed. In
  development `seal run` makes an admin key when `SEAL_ADMIN_KEY` is unset.
- **Production** (`docker-compose.yml`): PostgreSQL and Redis. The compose file fixes
  `SEAL_ENVIRONMENT`, `SEAL_DATABASE_URL`, `SEAL_BROKER_URL`, `SEAL_ADAPTER_DIR`,
  `SEAL_MODEL_CACHE_DIR` and `SEAL_HOST`; the other settings go in `.env` beside it
  ([deployment.md](deployment.md)).

## The settings

In the order of `service/settings.py`, by its sections. Bounds are inclusive unless marked
`<` or `>`.
"""


def _choices(values: Sequence[Any]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def _type_name(annotation: Any) -> str:
    """A field's type as a reader sets it: ``int``, ``path``, one of its choices, ..."""
    origin = get_origin(annotation)
    if origin is Literal:
        return _choices(get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [a for a in get_args(annotation) if a is not type(None)]
        return " or ".join(_type_name(a) for a in parts)
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        return f"JSON list of {_type_name(item)}"
    if annotation is SecretStr:
        return "secret string"
    if annotation is Path:
        return "path"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _bounds(field: FieldInfo) -> str:
    marks = []
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge):
            marks.append(f"≥ {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            marks.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            marks.append(f"≤ {item.le}")
        elif isinstance(item, annotated_types.Lt):
            marks.append(f"< {item.lt}")
    return ", ".join(marks)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True, validated_data={})
    return "unset" if value is None else f"`{_value(value)}`"


#: A repository file named in a description, e.g. docs/results/....md.
_FILE = re.compile(r"(?<![\w/`(])((?:docs|seal|service|worker|sealctl)/[\w./-]*\w\.md)")


def _cell(text: str) -> str:
    """One table cell: on one line, its pipes escaped, the files it names linked (relative
    to docs/, where the page lives)."""
    text = " ".join(text.split()).replace("|", "\\|")

    def link(match: re.Match[str]) -> str:
        path = match.group(1)
        target = path.removeprefix("docs/") if path.startswith("docs/") else f"../{path}"
        return f"[{path}]({target})"

    return _FILE.sub(link, text)


def _sections() -> dict[str, str]:
    """Each field's section, from the ``# --- name ---`` comments of the Settings class."""
    section, found = "Other settings", {}
    for line in inspect.getsource(Settings).splitlines():
        heading = re.match(r"\s*# --- (.+?) -*$", line)
        if heading:
            section = heading.group(1).strip()
            section = section[0].upper() + section[1:]
            continue
        declared = re.match(r" {4}(\w+):", line)
        if declared and declared.group(1) in Settings.model_fields:
            found[declared.group(1)] = section
    return found


def _row(name: str, field: FieldInfo) -> str:
    env = f"`{Settings.model_config.get('env_prefix', '')}{name.upper()}`"
    kind = _type_name(field.annotation)
    bounds = _bounds(field)
    if bounds:
        kind = f"{kind}, {bounds}"
    description = field.description or ""
    return f"| {env} | {_cell(kind)} | {_cell(_default(field))} | {_cell(description)} |"


def configuration_markdown() -> str:
    """The whole of docs/configuration.md."""
    sections = _sections()
    grouped: dict[str, list[str]] = {}
    for name, field in Settings.model_fields.items():
        grouped.setdefault(sections.get(name, "Other settings"), []).append(_row(name, field))
    parts = [_PREAMBLE]
    for section, rows in grouped.items():
        parts.append(f"\n### {section}\n\n| Variable | Type | Default | What it does |\n")
        parts.append("| --- | --- | --- | --- |\n")
        parts.append("".join(f"{row}\n" for row in rows))
    return "".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sealctl.docgen", description="Write docs/configuration.md from Settings."
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the committed page is stale"
    )
    args = parser.parse_args(argv)
    text = configuration_markdown()
    if args.check:
        current = CONFIGURATION_MD.read_text() if CONFIGURATION_MD.exists() else None
        if current != text:
            print(STALE, file=sys.stderr)
            return 1
        print("docs/configuration.md is up to date")
        return 0
    CONFIGURATION_MD.parent.mkdir(parents=True, exist_ok=True)
    CONFIGURATION_MD.write_text(text)
    print(f"wrote {CONFIGURATION_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
