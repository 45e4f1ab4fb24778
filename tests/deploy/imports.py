"""Which third-party distributions a meshplane distribution's code imports, and which it declares.

An image is built from a distribution's declared dependencies only (``uv sync --package X``), so a
module that its code imports but that no declared dependency provides makes the image fail at
start-up. This scanner reads the code (every ``import``, at any depth, except under
``if TYPE_CHECKING:``), maps each imported module to the installed distribution that provides it,
and compares with what the distribution's ``pyproject.toml`` declares, following the workspace
members it depends on (pilot -> meshplane-shared -> meshplane-proto).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]

#: workspace distribution -> its directory in the repository
WORKSPACE = {
    "meshplane-proto": REPO / "proto",
    "meshplane-shared": REPO / "shared",
    "meshplane-pilot": REPO / "services" / "pilot",
    "meshplane-citadel": REPO / "services" / "citadel",
    "meshplane-galley": REPO / "services" / "galley",
    "meshplane-cni": REPO / "services" / "cni",
    "meshplane-ctl": REPO / "ctl",
}


#: Test-support modules shipped inside distributions: they import pytest and are never loaded by
#: the services, so the image checks leave them out (listed here so the exception is explicit).
TEST_SUPPORT = ("meshplane.shared.testing", "meshplane.cni.testing")


@dataclass(frozen=True)
class Import:
    module: str
    where: str  # path:line
    names: tuple[str, ...] = ()  # for ``from module import a, b``: a and b may be submodules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_in(tree: ast.AST, where: str) -> Iterator[Import]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports_in(child, where)
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, f"{where}:{node.lineno}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield Import(node.module, f"{where}:{node.lineno}", tuple(a.name for a in node.names))
        yield from _imports_in(node, where)


def imports_of_source(source: str, where: str) -> list[Import]:
    """Absolute imports in one file's text that are neither stdlib nor meshplane's own."""
    found = []
    for imp in _imports_in(ast.parse(source, filename=where), where):
        top = imp.module.partition(".")[0]
        if top not in sys.stdlib_module_names and top not in {"meshplane", "__future__"}:
            found.append(imp)
    return found


def module_name(src: Path, path: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_test_support(module: str) -> bool:
    return any(module == t or module.startswith(t + ".") for t in TEST_SUPPORT)


def imports_of_tree(src: Path) -> list[Import]:
    """The third-party imports of every module under ``src`` except the test-support ones."""
    found = []
    for path in sorted(src.rglob("*.py")):
        if not is_test_support(module_name(src, path)):
            found += imports_of_source(path.read_text(), str(path.relative_to(REPO)))
    return found


@cache
def _top_level_index() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


@cache
def _files_of(distribution: str) -> frozenset[str]:
    return frozenset(str(f) for f in metadata.distribution(distribution).files or ())


def _is_under(file: str, prefix: str) -> bool:
    return file.startswith(prefix + "/") or file == prefix + ".py"


def providers_of(module: str) -> set[str]:
    """The installed distributions that ship ``module`` (namespace packages resolved by path)."""
    parts = module.split(".")
    candidates = set(_top_level_index().get(parts[0], []))
    for depth in range(2, len(parts) + 1):
        if len(candidates) <= 1:
            break
        prefix = "/".join(parts[:depth])
        candidates = {c for c in candidates if any(_is_under(f, prefix) for f in _files_of(c))}
    return {canonicalize_name(c) for c in candidates}


def _providers(imp: Import) -> set[str]:
    found = providers_of(imp.module)
    if len(found) > 1 and imp.names:  # ``from opentelemetry import trace``: decide by the submodule
        narrowed = set().union(*(providers_of(f"{imp.module}.{name}") for name in imp.names))
        found = narrowed or found
    return found


def _requirements(distribution: str) -> list[str]:
    pyproject = tomllib.loads((WORKSPACE[distribution] / "pyproject.toml").read_text())
    return [canonicalize_name(Requirement(r).name) for r in pyproject["project"].get("dependencies", [])]


def declared(distribution: str) -> set[str]:
    """What an environment built from ``distribution`` alone is promised: its dependencies, and
    those of the workspace members it depends on."""
    seen: set[str] = set()
    pending = [distribution]
    while pending:
        name = pending.pop()
        for req in _requirements(name):
            if req not in seen:
                seen.add(req)
                if req in WORKSPACE:
                    pending.append(req)
    return seen


def undeclared_imports(distribution: str, imports: list[Import]) -> list[str]:
    """One line per import that no declared dependency provides, naming the file and line."""
    promised = declared(distribution) | {distribution}
    problems = []
    for imp in imports:
        providers = _providers(imp)
        if not providers:
            problems.append(f"{imp.where}: imports {imp.module}, which no installed distribution provides")
        elif not providers & promised:
            problems.append(
                f"{imp.where}: imports {imp.module} (from {' or '.join(sorted(providers))}), "
                f"which {distribution}'s pyproject.toml does not declare"
            )
    return problems


def source_dir(distribution: str) -> Path:
    return WORKSPACE[distribution] / "src"
