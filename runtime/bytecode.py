"""One compiled copy of the workflow modules, shared by every workflow instance.

The workflow sandbox (temporalio's SandboxedWorkflowRunner) imports the
workflow's module afresh, with every module it imports that is not passed
through, each time it creates a workflow instance: for every new loan, and
for every loan that wakes after the worker's cache evicted it (every wake of
every loan, once more loans are open than max_cached_workflows). Each such
import asks Python's loader for the module's code object, and the loader
either compiles the source (when there is no usable `__pycache__/*.pyc`:
PYTHONDONTWRITEBYTECODE=1, usual in container images, or a tree nobody could
write) or unmarshals the .pyc into a new copy of the code. For
workflows/dunning.py the compiling was three quarters of the CPU of a new
workflow instance (22 ms of 30; bench/PROFILE.md), and each cached instance
kept its own 120 KiB copy of the code.

`share_code("workflows")`, called when the worker builds its sandbox runner,
puts a finder in front of Python's for the named packages whose loader keeps
the code object of each source file (by path, modification time and size)
and hands the same one to every import. Code objects are immutable, so
sharing them shares nothing a workflow could change: each import still runs
the module body and gets its own module, classes and functions. An edited
source has another modification time, so it is compiled afresh, as before.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import threading
from types import CodeType

_codes: dict[tuple[str, int, int], CodeType] = {}
_lock = threading.Lock()


class _SharedCodeLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType:
        stat = os.stat(self.path)
        key = (self.path, stat.st_mtime_ns, stat.st_size)
        code = _codes.get(key)
        if code is None:
            code = super().get_code(fullname)  # from the .pyc, or compiled: once
            with _lock:
                code = _codes.setdefault(key, code)
        return code


class _SharedCodeFinder(importlib.abc.MetaPathFinder):
    def __init__(self, packages: frozenset[str]) -> None:
        self.packages = packages

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] not in self.packages:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return spec
        spec.loader = _SharedCodeLoader(spec.loader.name, spec.loader.path)
        return spec


def share_code(*packages: str) -> None:
    """Share compiled code for these top-level packages (idempotent)."""
    with _lock:
        installed = next((f for f in sys.meta_path if isinstance(f, _SharedCodeFinder)), None)
        if installed is None:
            sys.meta_path.insert(0, _SharedCodeFinder(frozenset(packages)))
        elif not set(packages) <= installed.packages:
            installed.packages = installed.packages | frozenset(packages)
