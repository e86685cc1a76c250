"""Imports point down only (DESIGN.md §Layers), checked by import-linter's contracts in pyproject.toml.

ground floor (core) <- storage <- lifecycle <- ingest <- access | deploy <- callvault (entry points,
composition root). A failure names the module and line of each import that points up.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "storage", "lifecycle", "ingest", "access", "deploy", "callvault")


def test_import_linter_contracts_are_kept() -> None:
    tool = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(tool), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_every_package_is_under_a_contract() -> None:
    """A new top-level package must be placed in the layers, or it escapes the check."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert set(config["root_packages"]) == set(PACKAGES)
    layered = {name.strip() for layer in config["contracts"][0]["layers"] for name in layer.split("|")}
    assert layered == set(PACKAGES)
    shipped = set(config["root_packages"])
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert on_disk <= shipped, f"packages outside the layers: {sorted(on_disk - shipped)}"


def test_the_ground_floor_uses_only_the_standard_library_and_validation() -> None:
    allowed = {"phonenumbers", "pydantic", "pydantic_core", "pydantic_settings"}  # pydantic_core: its errors
    for path in (ROOT / "core").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top = node.module.split(".")[0]
            elif isinstance(node, ast.Import):
                top = node.names[0].name.split(".")[0]
            else:
                continue
            assert top in allowed or top in sys.stdlib_module_names or top == "core", f"{path.name} imports {top}"
