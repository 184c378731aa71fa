"""docs/architecture.md stays true: every module of the package is described there, and
imports only what its row allows, so data keeps flowing one way."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "exporter"
DOC = ROOT / "docs" / "architecture.md"

_ROW = re.compile(r"^\|\s*`(exporter[\w.]*)`\s*\|[^|]*\|([^|]*)\|\s*$")


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def allowed_imports() -> dict[str, set[str]]:
    """The doc's table: module -> the modules it may import (`pkg.*`: any module under pkg)."""
    rows: dict[str, set[str]] = {}
    for line in DOC.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = set(re.findall(r"`(exporter[\w.*]*)`", match.group(2)))
    return rows


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package's own modules that `path` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from exporter.probe import certs` imports a module; `import x` a name in one.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in known
                else node.module
                for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name == "exporter" or name.startswith("exporter."))
    return found


def permits(allowed: set[str], module: str) -> bool:
    return any(
        module == rule or (rule.endswith(".*") and module.startswith(rule[:-1])) for rule in allowed
    )


def test_every_module_is_described() -> None:
    rows = allowed_imports()
    assert sorted(set(modules()) - set(rows)) == []
    assert sorted(set(rows) - set(modules())) == []  # nothing described that is gone


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_follow_the_documented_direction(module: str) -> None:
    known = set(modules())
    allowed = allowed_imports().get(module, set())
    stray = sorted(
        name
        for name in imports_of(modules()[module], known)
        if name != module and not permits(allowed, name)
    )
    assert stray == [], f"{module} imports {stray}; docs/architecture.md allows {sorted(allowed)}"


def test_the_rules_name_real_modules() -> None:
    known = set(modules())
    for module, allowed in allowed_imports().items():
        for rule in allowed:
            target = rule[:-2] if rule.endswith(".*") else rule
            assert target in known, f"{module}: {rule} is not a module of the package"
