"""The project's own checks as tests, so CI holds them: mypy --strict and ruff over the packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_strict() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_layering() -> None:
    """adapters never import gateway; policies never import adapters (DESIGN.md)."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {forbidden}"
        for package, forbidden in (("adapters", "gateway"), ("policies", "adapters"))
        for path in (ROOT / package).rglob("*.py")
        if forbidden in imported_packages(path)
    ]
    assert offenders == []


def test_only_the_registry_names_providers() -> None:
    """No `== "anthropic"`-style comparisons outside adapters/registry.py."""
    names = ("openai", "azure", "anthropic", "mock")
    offenders = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for package in ("gateway", "adapters", "policies")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "registry.py"
        for line in path.read_text().splitlines()
        if any(f'== "{n}"' in line or f"== '{n}'" in line or f'"{n}" ==' in line for n in names)
    ]
    assert offenders == []
