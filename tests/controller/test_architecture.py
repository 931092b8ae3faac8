"""Dependency rules of docs/ARCHITECTURE.md: domain packages never import `controller`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    "hardware": set(),
    "miners": {"hardware"},
    "forecasting": {"hardware"},
    "treasury": {"forecasting"},
}
PROJECT = {"controller", "miners", "forecasting", "treasury", "hardware"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_domain_package_imports_only_what_it_may(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(bad)
        for path in (ROOT / package).rglob("*.py")
        if (bad := _imports(path) - ALLOWED[package] - {package})
    }
    assert offenders == {}
