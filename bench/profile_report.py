"""Summarise a py-spy profile (collapsed stacks, `--format raw`) of a worker.

    python -m bench.profile_report bench/profiles/start-dunning.txt [--top 40] [--match TEXT]

Prints the share of samples (threads holding the GIL, so: Python CPU time)
spent inside each function (inclusive) and in it alone (self), and in a few
named areas of the worker: the sandbox, our workflow code, activities,
SQLAlchemy, templates, logging, payload conversion.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Areas, first match (from the innermost frame outwards) wins. Each is a
# regular expression on a frame "function (file:line)".
AREAS = {
    "sandbox: new workflow instance (module imports)": r"_create_workflow_instance|workflow_sandbox/_(importer|restrictions)",
    "logging (structlog / logging)": r"structlog|/logging/__init__|runtime/logging",
    "templates (jinja2 / babel)": r"jinja2|babel|activities/rendering",
    "SQLAlchemy / sqlite": r"sqlalchemy|sqlite3|db/session|db/audit",
    "alembic": r"alembic",
    "pydantic": r"pydantic",
    "payload conversion (JSON / protobuf)": r"temporalio/converter|json/(encoder|decoder|__init__)|google/protobuf",
    "our workflow code": r"workflows/|dunning/(transitions|planner|state|status_view|keys|versions|carry|policy|compliance|clock|inputs|money|charges|bureau|arrangements)",
    "our activities": r"activities/|db/(outbox|write_once|evidence|directory|audit)|channels/",
}
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def read(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        frames, _, count = line.rpartition(" ")
        try:
            stacks.append((frames.split(";"), int(count)))
        except ValueError:
            continue
    return stacks


def short(frame: str) -> str:
    """'render (/x/site-packages/jinja2/environment.py:1295)' -> 'render (jinja2/environment.py)'."""
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "python3.11/", "/work/main/", "/tmp/head/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['function']} ({file})"


def summarise(stacks: list[tuple[list[str], int]], top: int = 40, match: str | None = None) -> str:
    total = sum(count for _, count in stacks) or 1
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    for frames, count in stacks:
        names = [short(f) for f in frames]
        for name in set(names):
            inclusive[name] += count
        if names:
            own[names[-1]] += count
        area = "other"
        for frame in reversed(frames):  # the innermost area that claims a frame
            found = next((label for label, pattern in AREAS.items() if re.search(pattern, frame)), None)
            if found:
                area = found
                break
        areas[area] += count
    lines = [f"{total} samples", "", "areas (innermost match):"]
    lines += [f"  {100 * n / total:5.1f}%  {label}" for label, n in areas.most_common()]
    pattern = re.compile(match) if match else None
    lines += ["", "inclusive (a function and what it calls):"]
    shown = 0
    for name, n in inclusive.most_common():
        if pattern and not pattern.search(name):
            continue
        lines.append(f"  {100 * n / total:5.1f}%  {name}")
        shown += 1
        if shown >= top:
            break
    lines += ["", "self (the function alone):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top // 2)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default=None, help="only inclusive entries matching this regular expression")
    args = parser.parse_args()
    print(summarise(read(args.profile), args.top, args.match))


if __name__ == "__main__":
    main()
