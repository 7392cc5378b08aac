"""Known vulnerabilities in the installed dependencies: `make audit`.

    python scripts/audit_dependencies.py [--lock FILE] [--ignore-vuln ID ...] [--strict]

What is audited is what is really installed: every distribution in the
site-packages of the interpreter that runs this (make audit: .venv's), but
the project itself, name==version. make install keeps that equal to
requirements.lock (scripts/check_lock.py), and this says so when it is not.
`--lock FILE` audits a lock file's pins instead (pip-compile's hashed format
or plain name==version lines), e.g. a new lock before installing it.

1. pip-audit, for real: `pip-audit -r <those pins> --no-deps --disable-pip`
   against PyPI's vulnerability data (per release: /pypi/<name>/<version>/json).
2. Where pip-audit could not audit a package (the service unreachable, or an
   index that serves no per-release JSON, as a mirror may), PyPI's project
   JSON (/pypi/<name>/json) is asked instead: its `vulnerabilities` are those
   of the project's latest release, the same data, so a package at its
   latest release is audited that way. A package at an older release
   cannot be, and is named as not audited.

Exit 1 when an audited package has a known vulnerability (not ignored). When
some or all packages could not be audited it says so on a loud line,
`dependency audit: INCOMPLETE` or `dependency audit: SKIPPED`, and exits 0,
or 1 with --strict (or DUNNING_AUDIT_STRICT=1). It never reports a package
as clean that nothing checked. docs/operations.md explains it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_lock  # noqa: E402  (scripts/check_lock.py)

PROJECT = Path(__file__).resolve().parent.parent
PYPI_JSON = "https://pypi.org/pypi/{name}/json"
TIMEOUT = 20


@dataclass
class Package:
    name: str
    version: str
    audited_by: str = ""  # "pip-audit" | "project JSON" | "" (not audited)
    vulns: list[dict] = field(default_factory=list)
    why_not: str = ""


def read_lock(path: Path) -> list[Package]:
    """The pins of a lock file: pip-compile's hashed format (continued lines,
    --hash= options, # via comments) or plain name==version lines."""
    try:
        pins = check_lock.read_lock(path)
    except (OSError, ValueError) as error:
        raise SystemExit(str(error)) from None
    return [Package(pin.name, pin.version) for pin in pins.values()]


def read_installed() -> list[Package]:
    """What this interpreter has installed (its site-packages), but the project itself."""
    installed = check_lock.installed_distributions()
    return [Package(dists[0].metadata["Name"], dists[0].version)
            for key, dists in sorted(installed.items()) if key != check_lock.normalize(check_lock.PROJECT_NAME)]


def normalized(name: str) -> str:
    return check_lock.normalize(name)


def run_pip_audit(packages: dict[str, Package]) -> str:
    """Fill in what pip-audit audited; returns why it audited nothing, or ""."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pins = Path(tmp) / "requirements.txt"
        pins.write_text("".join(f"{p.name}=={p.version}\n" for p in packages.values()))
        command = [
            sys.executable, "-m", "pip_audit", "-r", str(pins), "--no-deps", "--disable-pip",
            "--progress-spinner", "off", "--format", "json", "--output", str(report),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return "pip-audit timed out"
        if not report.exists() or not report.read_text().strip():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return f"pip-audit failed (exit {result.returncode}): {last}"
        data = json.loads(report.read_text())
    for entry in data.get("dependencies", []):
        package = packages.get(normalized(entry["name"]))
        if package is None:
            continue
        if "skip_reason" in entry:
            package.why_not = entry["skip_reason"]
        else:
            package.audited_by = "pip-audit"
            package.vulns = [{"id": v["id"], "fix_versions": v.get("fix_versions", []), "aliases": v.get("aliases", [])}
                             for v in entry.get("vulns", [])]
    return ""


def project_json(package: Package) -> None:
    try:
        with urllib.request.urlopen(PYPI_JSON.format(name=package.name), timeout=TIMEOUT) as response:
            data = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        package.why_not = f"PyPI's project JSON unreachable ({error})"
        return
    latest = data.get("info", {}).get("version")
    if latest != package.version:
        package.why_not = f"{package.version} is not the latest release ({latest}); no per-release data here"
        return
    if "vulnerabilities" not in data:
        package.why_not = "PyPI's project JSON has no vulnerability data"
        return
    package.audited_by = "project JSON"
    package.vulns = [{"id": v["id"], "fix_versions": v.get("fixed_in", []), "aliases": v.get("aliases", [])}
                     for v in data["vulnerabilities"] if not v.get("withdrawn")]


def drift_warning(lock: Path) -> str:
    """Say so when what is installed differs from the lock (one of the two was not audited)."""
    try:
        drift = check_lock.installed_vs_lock(check_lock.installed_distributions(), check_lock.read_lock(lock))
    except (OSError, ValueError) as error:
        return f"dependency audit: note: cannot compare with {lock.name}: {error}"
    if not drift:
        return ""
    shown = "; ".join(drift[:8]) + (f"; and {len(drift) - 8} more" if len(drift) > 8 else "")
    return (f"dependency audit: note: this environment differs from {lock.name} ({shown}): "
            f"`make install` installs the lock again (scripts/check_lock.py)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=None,
                        help="audit this lock file's pins instead of what is installed")
    parser.add_argument("--ignore-vuln", action="append", default=[], metavar="ID")
    parser.add_argument("--strict", action="store_true", default=os.environ.get("DUNNING_AUDIT_STRICT") == "1",
                        help="exit 1 when any package could not be audited")
    args = parser.parse_args(argv)

    audited_packages = read_lock(args.lock) if args.lock else read_installed()
    what = f"packages locked in {args.lock.name}" if args.lock else "installed packages"
    packages = {normalized(p.name): p for p in audited_packages}
    pip_audit_problem = run_pip_audit(packages)
    if pip_audit_problem:
        for package in packages.values():
            package.why_not = pip_audit_problem
    unaudited = [p for p in packages.values() if not p.audited_by]
    if unaudited:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(project_json, unaudited))

    ignored = set(args.ignore_vuln)
    vulnerable = []
    for package in packages.values():
        for vuln in package.vulns:
            if vuln["id"] in ignored or ignored & set(vuln["aliases"]):
                continue
            vulnerable.append((package, vuln))
    audited = [p for p in packages.values() if p.audited_by]
    not_audited = [p for p in packages.values() if not p.audited_by]
    by = {how: sum(1 for p in audited if p.audited_by == how) for how in ("pip-audit", "project JSON")}

    for package, vuln in vulnerable:
        fixes = ", ".join(vuln["fix_versions"]) or "no fixed release"
        aliases = f" ({', '.join(vuln['aliases'])})" if vuln["aliases"] else ""
        print(f"VULNERABLE: {package.name} {package.version}: {vuln['id']}{aliases}; fixed in {fixes}")
    if audited:  # (when nothing was audited, the one line below says why)
        for package in sorted(not_audited, key=lambda p: p.name.lower()):
            print(f"not audited: {package.name} {package.version}: {package.why_not}")
    if pip_audit_problem:
        print(f"dependency audit: pip-audit could not reach its service: {pip_audit_problem}")
        if not audited:
            reasons = sorted({p.why_not for p in not_audited})
            print(f"dependency audit: nor could PyPI's project JSON be read: {reasons[0]}")
    elif by["project JSON"]:
        print("dependency audit: pip-audit's per-release queries went unanswered here "
              "(this index serves no /pypi/<name>/<version>/json); PyPI's project JSON was asked instead")
    warning = drift_warning(args.lock or PROJECT / "requirements.lock")
    if warning:
        print(warning)

    summary = (
        f"{len(packages)} {what}, {len(audited)} audited "
        f"({by['pip-audit']} by pip-audit, {by['project JSON']} by PyPI's project JSON), "
        f"{len(vulnerable)} known vulnerabilities"
        + (f" ({len(ignored)} ids ignored)" if ignored else "")
    )
    if vulnerable:
        print(f"dependency audit: FAILED: {summary}")
        return 1
    if not audited:
        print(f"dependency audit: SKIPPED: the vulnerability service was unreachable; NOTHING WAS AUDITED ({summary})")
        return 1 if args.strict else 0
    if not_audited:
        print(f"dependency audit: INCOMPLETE: {summary}; {len(not_audited)} NOT AUDITED (listed above)")
        return 1 if args.strict else 0
    print(f"dependency audit: passed: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
