"""The determinism lint: what the workflow code may not do, read from its source.

The workflows run outside the SDK's sandbox by default (DUNNING_WORKFLOW_SANDBOX,
runtime/settings.py), and the core they call (dunning/) was always passed
through it, so neither relies on the sandbox's runtime checks. This lint
makes the same promise statically, for both packages, on every `make test`:

- imports only from an allowlist: pure standard-library modules, pydantic,
  holidays, temporalio's workflow API, and the project's own pure modules
  (import-linter already keeps the database, the providers and the
  activities' implementations out of reach);
- no reading of the clock (`datetime.now()`, `date.today()`, ...), of
  randomness, of the environment, of files, and no `hash()` (salted per process);
- no module-level state in workflows/ that one workflow could change under
  another: no `global`, and the module-level tables are read-only.

Each rule has a negative control: a snippet that breaks it, caught by name.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("workflows", "dunning")

ALLOWED_MODULES = {
    "__future__", "abc", "bisect", "collections", "copy", "dataclasses", "datetime", "decimal", "enum",
    "fractions", "functools", "hashlib", "itertools", "json", "math", "operator", "re", "string",
    "types", "typing", "unicodedata", "zoneinfo",
    "holidays", "pydantic",
    "temporalio", "temporalio.workflow", "temporalio.common", "temporalio.exceptions",
    "dunning", "workflows", "activities.payloads",
}
# Calls that read something besides the workflow's input and history.
FORBIDDEN_CALLS = {
    "datetime.now", "datetime.utcnow", "datetime.today", "date.today", "datetime.datetime.now",
    "datetime.datetime.utcnow", "datetime.date.today", "datetime.fromtimestamp", "uuid.uuid1", "uuid.uuid4",
    "os.getenv", "os.urandom",
}
FORBIDDEN_BUILTINS = {"open", "input", "hash", "exec", "eval", "breakpoint"}
FORBIDDEN_ATTRIBUTES = {"os.environ"}
READ_ONLY_WRAPPERS = {"MappingProxyType", "frozenset", "tuple"}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _allowed(module: str) -> bool:
    """An allowed module or one inside it; of temporalio, only the modules named (not its client or worker)."""
    return module in ALLOWED_MODULES or any(
        module.startswith(allowed + ".") for allowed in ALLOWED_MODULES if allowed != "temporalio")


def findings(source: str, path: str, *, workflow_module: bool) -> list[str]:
    """What `source` does that the workflow code may not: one line per finding, with its line number."""
    tree = ast.parse(source, path)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{path}:{node.lineno}: imports {a.name}" for a in node.names if not _allowed(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and not _allowed(node.module):
            # `from activities import payloads` names the module it takes.
            found += [f"{path}:{node.lineno}: imports from {node.module}" for a in node.names
                      if not _allowed(f"{node.module}.{a.name}")][:1]
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in FORBIDDEN_CALLS:
                found.append(f"{path}:{node.lineno}: calls {name}()")
            elif isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_BUILTINS:
                found.append(f"{path}:{node.lineno}: calls {node.func.id}()")
        elif isinstance(node, ast.Attribute) and _dotted(node) in FORBIDDEN_ATTRIBUTES:
            found.append(f"{path}:{node.lineno}: reads {_dotted(node)}")
        elif isinstance(node, ast.Global) and workflow_module:
            found.append(f"{path}:{node.lineno}: global {', '.join(node.names)}")
    if workflow_module:
        for node in tree.body:
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
                found.append(f"{path}:{node.lineno}: a mutable module-level table (wrap it read-only)")
            elif isinstance(value, ast.Call) and _dotted(value.func) in {"dict", "list", "set", "defaultdict"}:
                found.append(f"{path}:{node.lineno}: a mutable module-level table (wrap it read-only)")
    return found


def _sources():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


@pytest.mark.parametrize("package", PACKAGES)
def test_the_workflow_code_reads_nothing_but_its_input_and_history(package):
    found = [
        finding
        for name, path in _sources() if name == package
        for finding in findings(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)),
                                workflow_module=name == "workflows")
    ]
    assert found == []


@pytest.mark.parametrize("snippet, expected", [
    ("import random\n", "imports random"),
    ("import time\n", "imports time"),
    ("from os import environ\n", "imports from os"),
    ("from datetime import datetime\nx = datetime.now()\n", "calls datetime.now()"),
    ("import datetime\nx = datetime.date.today()\n", "calls datetime.date.today()"),
    ("x = hash('loan')\n", "calls hash()"),
    ("x = open('policy.toml').read()\n", "calls open()"),
    ("import os\n", "imports os"),
    ("def f():\n    global COUNT\n", "global COUNT"),
    ("SEEN = {}\n", "a mutable module-level table"),
    ("SEEN = set()\n", "a mutable module-level table"),
])
def test_the_lint_names_each_thing_the_workflow_code_may_not_do(snippet, expected):
    found = findings(snippet, "workflows/example.py", workflow_module=True)
    assert len(found) == 1 and expected in found[0], found


def test_read_only_tables_and_the_workflow_clock_pass_the_lint():
    source = (
        "from types import MappingProxyType\nfrom temporalio import workflow\n"
        "TABLE = MappingProxyType({'a': 1})\nNAMES = frozenset({'a'})\n"
        "def now():\n    return workflow.now()\n"
    )
    assert findings(source, "workflows/example.py", workflow_module=True) == []
