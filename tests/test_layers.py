"""The layers of docs/architecture.md hold: no import runs from a lower layer
to a higher one, the core does no I/O, and the workflows reach the world only
through activities (the contracts are in .importlinter)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a dev dependency (requirements.lock)"
    run = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_nothing_imports_the_entry_point_scripts():
    """worker.py and starter.py are the top: a module importing them would
    run a layer upside down (import-linter sees packages only)."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in (".venv", ".dunning", "tests", "build") or relative.name in ("worker.py", "starter.py"):
            continue
        if _imported_modules(path) & {"worker", "starter"}:
            offenders.append(str(relative))
    assert offenders == []


def test_the_layer_check_would_catch_an_upward_import(tmp_path):
    """Negative control: the same contracts, over a copy of the core with one
    upward import added, are broken."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".dunning", ".git", "tests", "*.pyc", "__pycache__"))
    planner = copy / "dunning" / "planner.py"
    planner.write_text(planner.read_text(encoding="utf-8") + "\nimport runtime.settings  # upward\n", encoding="utf-8")
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    run = subprocess.run([lint, "--no-cache"], cwd=copy, capture_output=True, text=True, timeout=300,
                         env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(copy)})
    assert run.returncode != 0
    assert "dunning is not allowed to import runtime" in run.stdout
