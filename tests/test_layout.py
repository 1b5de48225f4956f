"""The layout's rules: the service's runtime imports no research code, and the research
package's own dependencies are not the runtime's."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("seal", "service", "worker")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", RUNTIME)
def test_no_runtime_module_imports_research_code(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in _imports(path)
        if name.split(".")[0] in {"research", "matplotlib", "sealctl"}
    ]
    assert offenders == []


def test_starting_the_api_and_the_worker_loads_no_research_module() -> None:
    probe = (
        "import sys, service.app, worker.tasks, worker.beat, seal.knowledge, seal.restem; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'research', 'matplotlib'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_matplotlib_is_a_research_dependency_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("matplotlib") for dep in project["dependencies"])
    assert any(dep.startswith("matplotlib") for dep in project["optional-dependencies"]["research"])
