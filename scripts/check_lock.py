"""Is this environment exactly requirements.lock? `make install` runs it last.

    python scripts/check_lock.py [--lock requirements.lock] [--pyproject pyproject.toml]
                                 [--remove-extras] [--quiet]

It checks, for the interpreter that runs it (the .venv's under make):

1. installed == locked: the distributions in this interpreter's site-packages
   against the lock's pins (names normalized per PEP 503), ignoring only the
   project itself (`dunning`, installed editable). Each package that is
   missing, extra, at a different version or installed twice is named.
2. the lock is in step with pyproject.toml: every dependency, every `dev`
   extra and every build requirement (`[build-system] requires`; make install
   builds the project without isolation) is locked at a version its specifier
   allows.
3. nothing installed lacks a dependency: every installed distribution's
   requirements (and those of the extras asked for, from the project's
   `[dev]` down) are installed at allowed versions. make install installs with
   --no-deps, so this is what would notice a lock that is not closed.

Exit 0 when all hold, else 1 after one line per problem. `--remove-extras`
first uninstalls (pip uninstall -y) the installed packages the lock does not
name, saying which: make install uses it to bring an existing .venv back to
the lock after `pip install --require-hashes --no-deps -r requirements.lock`
has put in the locked versions. tests/test_installed_matches_lock.py calls
check() too. docs/operations.md explains the lock.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

PROJECT = Path(__file__).resolve().parent.parent
LOCK = PROJECT / "requirements.lock"
PYPROJECT = PROJECT / "pyproject.toml"
PROJECT_NAME = "dunning"  # installed editable by make install, never in the lock
EXTRAS = ("dev",)  # the pyproject extras that make install installs and the lock holds


def normalize(name: str) -> str:
    """PEP 503: `Foo.Bar_baz` -> `foo-bar-baz`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Pin:
    name: str
    version: str


def read_lock(path: Path) -> dict[str, Pin]:
    """The pins of a requirements file, by normalized name.

    Reads pip-compile's hashed format (a requirement continued over lines
    ending in `\\`, `--hash=` options, `# via` comments) and plain
    `name==version` lines alike. Option lines (`--index-url`, ...) are
    skipped; a requirement that is not pinned with `==`, or an `-e`, `-r` or
    `-c` line, is an error. A pin whose environment marker is false here is
    left out, as pip would leave it.
    """
    text = path.read_text()
    logical, current = [], ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    if current.strip():
        logical.append(current.strip())

    pins: dict[str, Pin] = {}
    for line in logical:
        if line.startswith("-"):
            if re.match(r"-(e|r|c)\b|--(editable|requirement|constraint)\b", line):
                raise ValueError(f"{path}: {line.split()[0]} is not allowed in the lock: {line[:80]!r}")
            continue  # --index-url, --find-links, ...: pip's business
        requirement_text = re.split(r"\s--?[a-z]", " " + line, maxsplit=1)[0].strip()
        try:
            requirement = Requirement(requirement_text)
        except InvalidRequirement as error:
            raise ValueError(f"{path}: cannot read {requirement_text!r}: {error}") from None
        specifiers = list(requirement.specifier)
        if requirement.url or len(specifiers) != 1 or specifiers[0].operator != "==" or "*" in specifiers[0].version:
            raise ValueError(f"{path}: {requirement_text!r} is not pinned (name==version)")
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        key = normalize(requirement.name)
        if key in pins:
            raise ValueError(f"{path}: {requirement.name} is pinned twice")
        pins[key] = Pin(requirement.name, specifiers[0].version)
    return pins


def site_packages() -> list[str]:
    """This interpreter's own site-packages: what is installed in it (not PYTHONPATH's, nor the work tree's)."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def installed_distributions(paths: list[str] | None = None) -> dict[str, list[metadata.Distribution]]:
    """The installed distributions by normalized name (more than one when a package is installed twice)."""
    found: dict[str, list[metadata.Distribution]] = {}
    for dist in metadata.distributions(path=paths if paths is not None else site_packages()):
        name = dist.metadata["Name"]
        if not name:
            continue  # a broken metadata directory, not an installed distribution
        found.setdefault(normalize(name), []).append(dist)
    return found


def installed_vs_lock(installed: dict[str, list[metadata.Distribution]], pins: dict[str, Pin],
                      ignore: tuple[str, ...] = (PROJECT_NAME,)) -> list[str]:
    """One line per difference between the installed set and the lock."""
    problems = []
    ignored = {normalize(name) for name in ignore}
    for key in sorted((set(installed) | set(pins)) - ignored):
        pin, dists = pins.get(key), installed.get(key, [])
        versions = sorted({dist.version for dist in dists})
        if pin is None:
            problems.append(f"extra: {dists[0].metadata['Name']} {', '.join(versions)} is installed, but not locked")
        elif not dists:
            problems.append(f"missing: {pin.name}=={pin.version} is locked, but not installed")
        elif len(dists) > 1:
            problems.append(f"installed twice: {pin.name} {' and '.join(dist.version for dist in dists)} "
                            f"(locked {pin.version}); reinstall it")
        elif not same_version(dists[0].version, pin.version):
            problems.append(f"different: {pin.name} {dists[0].version} is installed, {pin.version} is locked")
    return problems


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def allowed(requirement: Requirement, version: str) -> bool:
    return requirement.specifier.contains(version, prereleases=True)


def lock_vs_pyproject(pyproject: Path, pins: dict[str, Pin], extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """One line per pyproject requirement that the lock leaves out or pins outside its specifier."""
    data = tomllib.loads(pyproject.read_text())
    sections = [("dependencies", data.get("project", {}).get("dependencies", []))]
    optional = data.get("project", {}).get("optional-dependencies", {})
    sections += [(f"the {extra} extra", optional.get(extra, [])) for extra in extras]
    sections.append(("[build-system] requires", data.get("build-system", {}).get("requires", [])))
    problems = []
    for section, requirements in sections:
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            pin = pins.get(normalize(requirement.name))
            if pin is None:
                problems.append(f"lock out of date: {requirement} ({section} in pyproject.toml) "
                                f"is not in requirements.lock; run `make lock`")
            elif not allowed(requirement, pin.version):
                problems.append(f"lock out of date: {requirement} ({section} in pyproject.toml), "
                                f"but requirements.lock pins {pin.name}=={pin.version}; run `make lock`")
    return problems


def unmet_dependencies(installed: dict[str, list[metadata.Distribution]],
                       root: str = PROJECT_NAME, root_extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """One line per requirement of an installed distribution that is not installed at an allowed version.

    The extras asked for are followed from the project's own (`dunning[dev]`)
    down, e.g. `psycopg[binary]` asks for psycopg-binary.
    """
    wanted: dict[str, set[str]] = {key: {""} for key in installed}
    if normalize(root) in wanted:
        wanted[normalize(root)] |= set(root_extras)
    done: dict[str, set[str]] = {key: set() for key in installed}
    problems: set[str] = set()
    todo = list(installed)
    while todo:
        key = todo.pop()
        extras = wanted[key] - done[key]
        if not extras:
            continue
        done[key] |= extras
        dist = installed[key][0]
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not any(
                    requirement.marker.evaluate({"extra": extra}) for extra in extras):
                continue
            target = normalize(requirement.name)
            by = f"{dist.metadata['Name']} {dist.version} requires {requirement}"
            if target not in installed:
                problems.add(f"unmet: {by}, which is not installed")
                continue
            version = installed[target][0].version
            if not allowed(requirement, version):
                problems.add(f"unmet: {by}, but {installed[target][0].metadata['Name']} {version} is installed")
            if requirement.extras - wanted[target]:
                wanted[target] |= requirement.extras
                todo.append(target)
    return sorted(problems)


def check(lock: Path = LOCK, pyproject: Path = PYPROJECT,
          installed: dict[str, list[metadata.Distribution]] | None = None) -> list[str]:
    """Every problem found, one line each; [] when this environment is the lock."""
    if installed is None:
        installed = installed_distributions()
    try:
        pins = read_lock(lock)
    except (OSError, ValueError) as error:
        return [f"cannot read the lock: {error}"]
    return (lock_vs_pyproject(pyproject, pins) + installed_vs_lock(installed, pins)
            + unmet_dependencies(installed))


def remove_extras(lock: Path) -> list[str]:
    """pip uninstall the installed packages the lock does not name (not the project); returns them."""
    pins = read_lock(lock)
    installed = installed_distributions()
    extras = sorted(key for key in installed if key not in pins and key != normalize(PROJECT_NAME))
    if extras:
        shown = ", ".join(f"{installed[key][0].metadata['Name']} {installed[key][0].version}" for key in extras)
        print(f"check_lock: removing {len(extras)} package(s) that {lock.name} does not name: {shown}")
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", *extras], check=True)
    return extras


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT)
    parser.add_argument("--remove-extras", action="store_true",
                        help="first pip uninstall the installed packages that the lock does not name")
    parser.add_argument("--quiet", action="store_true", help="print nothing when all is well")
    args = parser.parse_args(argv)

    if args.remove_extras:
        remove_extras(args.lock)
    problems = check(args.lock, args.pyproject)
    for problem in problems:
        print(f"check_lock: {problem}")
    if problems:
        print(f"check_lock: FAILED: {sys.prefix} is not {args.lock.name} ({len(problems)} problem(s) above). "
              f"`make install` installs the lock again; after changing pyproject.toml run `make lock` first.")
        return 1
    if not args.quiet:
        count = len(read_lock(args.lock))
        print(f"check_lock: {sys.prefix} is exactly {args.lock.name} ({count} packages) plus {PROJECT_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
