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


def test_the_api_starts_without_torch() -> None:
    """torch loads in the API only to chat or to export an adapter, on first use."""
    probe = "import sys, service.app; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_matplotlib_is_a_research_dependency_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("matplotlib") for dep in project["dependencies"])
    assert any(dep.startswith("matplotlib") for dep in project["optional-dependencies"]["research"])


FIRST_PARTY = ("seal", "service", "worker", "research", "sealctl", "migrations")
#: Which packages each package may import (besides itself): the core below everything, the
#: API below the worker, the research code above the product, the CLI on top.
MAY_IMPORT = {
    "seal": set(),
    "service": {"seal", "migrations"},
    "migrations": {"seal", "service"},
    "worker": {"seal", "service"},
    "research": {"seal", "service", "worker", "migrations"},
    "sealctl": {"seal", "service", "worker", "research", "migrations"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _first_party_files() -> dict[str, Path]:
    """Every first-party module (the migrations' versions aside) and its file."""
    return {
        _module_name(p): p
        for package in FIRST_PARTY
        for p in (ROOT / package).rglob("*.py")
        if "versions" not in p.parts or package != "migrations"
    }


def _graph() -> dict[str, set[str]]:
    """Every first-party module and the first-party modules it imports, at the top or inside
    a function (``from pkg import mod`` counts as importing ``pkg.mod`` when that is a module)."""
    files = _first_party_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exporting its own submodules is no circle: drop the edges
    from a package to the modules inside it."""
    return {
        name: {t for t in targets if not t.startswith(f"{name}.")}
        for name, targets in graph.items()
    }


def test_no_import_circles_even_inside_functions() -> None:
    assert _cycles(_without_package_inits(_graph())) == []


def test_packages_import_only_downwards() -> None:
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in _graph().items()
        for target in targets
        if (src := name.split(".")[0]) != (dst := target.split(".")[0])
        and dst not in MAY_IMPORT[src]
    )
    assert offenders == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: First-party modules whose import loads torch, transformers and peft (the model code, and the
#: worker's modules above it): the API loads them only to chat or to export an adapter.
LOADS_TORCH = {
    "seal.batching",
    "seal.distill",
    "seal.generation",
    "seal.lora",
    "seal.modeling",
    "seal.multi",
    "seal.serving",
    "seal.skills.ttt",
    "seal.train",
    "worker.bundled",
    "worker.config",
    "worker.jobs.common",
    "worker.jobs.skill_teacher",
    "worker.jobs.teacher",
    "worker.runtime",
}
#: The research package (most of it loads torch too): only ``seal eval`` and ``seal bench`` need it.
RESEARCH_FOR_THE_CLI = {
    "research.bench",
    "research.data",
    "research.evaluation",
    "research.knowledge_run",
    "research.proxy",
    "research.report",
    "research.serve",
    "research.skill_job",
    "research.skills",
    "research.stream",
}
#: Modules that load a library the CLI's start does not: alembic (``migrations``), SQLAlchemy
#: (the store), Celery and FastAPI (``service.domain``), httpx (the stack's HTTP client).
SLOW_FOR_THE_CLI = {
    "migrations",
    "service.domain.skills",
    "service.store.db",
    "service.store.models",
    "service.store.repositories.teachers",
    "sealctl.chaos",
    "sealctl.fleet",
    "sealctl.artifacts",
    "sealctl.stack",
    "sealctl.memory_bench",
    "service.artifacts",
}
#: The first-party modules a function may import, by the importing module's package; every
#: other first-party import sits at the top of its module. The API starts without torch
#: (``test_the_api_starts_without_torch``) and ``seal --help`` starts in a fraction of a
#: second, loading neither torch nor the research package; the worker and the research code
#: load torch at their start anyway, so they import everything at the top.
LAZY_ALLOWED: dict[str, set[str]] = {
    "service": LOADS_TORCH,
    "sealctl": LOADS_TORCH | RESEARCH_FOR_THE_CLI | SLOW_FOR_THE_CLI,
}


def _lazy_imports(path: Path, files: dict[str, Path]) -> list[tuple[int, str, str]]:
    """The first-party modules imported inside a function of ``path``: line, function and
    module (``from pkg import mod`` imports ``pkg.mod`` when that is a module)."""
    found: dict[tuple[int, int, str], tuple[int, str, str]] = {}
    for function in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in files
                    else node.module
                    for alias in node.names
                ]
            else:
                continue
            for name in names:
                if name.split(".")[0] in FIRST_PARTY:
                    # a nested function's import: its innermost function (walked last) wins
                    found[node.lineno, node.col_offset, name] = (node.lineno, function.name, name)
    return sorted(found.values())


def test_first_party_imports_sit_at_the_top_unless_heavy() -> None:
    files = _first_party_files()
    lazy = [
        (module, path, line, function, name)
        for module, path in sorted(files.items())
        for line, function, name in _lazy_imports(path, files)
    ]
    offenders = [
        f"{path.relative_to(ROOT)}:{line} {function}() imports {name}"
        for module, path, line, function, name in lazy
        if name not in LAZY_ALLOWED.get(module.split(".")[0], set())
    ]
    assert not offenders, (
        "first-party imports inside a function: move them to the top of the module, or add "
        "the module to LAZY_ALLOWED with why it is heavy:\n" + "\n".join(offenders)
    )
    unused = set().union(*LAZY_ALLOWED.values()) - {name for *_, name in lazy}
    assert not unused, f"LAZY_ALLOWED names modules no function imports: {sorted(unused)}"


#: The house limits: no module over 550 lines, at most 3 functions over 80 lines (nested ones
#: counted, signature and docstring included).
MAX_MODULE_LINES = 550
MAX_FUNCTION_LINES = 80
LONG_FUNCTIONS_ALLOWED = 3
CHECKED = ("service", "worker", "seal", "sealctl", "research")


def _sources() -> list[Path]:
    return sorted(p for package in CHECKED for p in (ROOT / package).rglob("*.py"))


def test_no_module_is_over_the_house_limit() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _sources()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def _long_functions(path: Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)"
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES
    ]


def test_at_most_three_functions_are_over_80_lines() -> None:
    long = [f for p in _sources() for f in _long_functions(p)]
    assert len(long) <= LONG_FUNCTIONS_ALLOWED, long


def test_rollback_is_written_once() -> None:
    """Every history's rollback is ``service.domain.versions.rollback``: no other module of
    the service outside its routes defines one."""
    defined = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "service").rglob("*.py")
        if "routes" not in p.parts
        for node in ast.walk(ast.parse(p.read_text(), str(p)))
        if isinstance(node, ast.FunctionDef) and node.name == "rollback"
    )
    assert defined == ["service/domain/versions.py"]
