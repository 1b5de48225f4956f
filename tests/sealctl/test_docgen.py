"""docs/configuration.md is what Settings says, and the docs' relative links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sealctl import docgen
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

#: ``](target)`` of a markdown link or image; the target ends at a space or ``)``.
_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def test_committed_page_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == docgen.configuration_markdown(), docgen.STALE


def test_every_setting_is_documented() -> None:
    page = docgen.configuration_markdown()
    missing = [name for name in Settings.model_fields if f"| `SEAL_{name.upper()}` |" not in page]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


def test_check_fails_on_a_stale_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "configuration.md"
    monkeypatch.setattr(docgen, "CONFIGURATION_MD", page)
    assert docgen.main([]) == 0
    assert docgen.main(["--check"]) == 0
    page.write_text(page.read_text() + "an edit by hand\n")
    assert docgen.main(["--check"]) == 1
    assert docgen.STALE in capsys.readouterr().err


def _relative_links(markdown: str) -> list[str]:
    prose = _FENCE.sub("", markdown)
    prose = re.sub(r"`[^`\n]*`", "", prose)  # inline code is not a link
    targets = []
    for target in _LINK.findall(prose):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        targets.append(target)
    return targets


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_link_finder_finds_links() -> None:
    text = (
        "[a](docs/api.md) [b](docs/api.md#errors) ![c](img/x.png) [d](https://x.org) "
        "[e](#top) [f](mailto:a@b.c) `[g](not/a/link.md)`\n```\n[h](code.md)\n```\n"
    )
    assert _relative_links(text) == ["docs/api.md", "docs/api.md#errors", "img/x.png"]


def test_relative_links_lead_to_files() -> None:
    broken = []
    for page in _pages():
        for target in _relative_links(page.read_text()):
            path = target.split("#", 1)[0]
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)
