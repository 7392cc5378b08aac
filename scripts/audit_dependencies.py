"""Known vulnerabilities in the locked dependencies (requirements.lock): `make audit`.

    python scripts/audit_dependencies.py [--lock requirements.lock] [--ignore-vuln ID ...] [--strict]

1. pip-audit, for real: `pip-audit -r requirements.lock --no-deps --disable-pip`
   against PyPI's vulnerability data (per release: /pypi/<name>/<version>/json).
2. Where pip-audit could not audit a package (the service unreachable, or an
   index that serves no per-release JSON, as a mirror may), PyPI's project
   JSON (/pypi/<name>/json) is asked instead: its `vulnerabilities` are those
   of the project's latest release, the same data, so a package locked at
   its latest release is audited that way. A package locked at an older
   release cannot be, and is named as not audited.

Exit 1 when a locked package has a known vulnerability (not ignored). When
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
    packages = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if "==" not in line:
            raise SystemExit(f"{path}: {line!r} is not pinned (name==version)")
        name, version = line.split("==", 1)
        packages.append(Package(name.strip(), version.split(";")[0].strip()))
    return packages


def normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def run_pip_audit(lock: Path, packages: dict[str, Package]) -> str:
    """Fill in what pip-audit audited; returns why it audited nothing, or ""."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pip_audit", "-r", str(lock), "--no-deps", "--disable-pip",
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
        package.why_not = f"locked at {package.version}, not the latest release ({latest}); no per-release data here"
        return
    if "vulnerabilities" not in data:
        package.why_not = "PyPI's project JSON has no vulnerability data"
        return
    package.audited_by = "project JSON"
    package.vulns = [{"id": v["id"], "fix_versions": v.get("fixed_in", []), "aliases": v.get("aliases", [])}
                     for v in data["vulnerabilities"] if not v.get("withdrawn")]


def stale_lock_warning(lock_packages: list[Package]) -> str:
    """The lock is what is audited: say so when this environment has drifted from it."""
    result = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True, text=True)
    if result.returncode != 0:
        return ""
    installed = {normalized(l.split("==")[0]): l.split("==")[1] for l in result.stdout.splitlines() if "==" in l}
    locked = {normalized(p.name): p.version for p in lock_packages}
    drift = sorted(
        f"{name} {locked.get(name, '-')} locked, {installed.get(name, '-')} installed"
        for name in set(installed) | set(locked)
        if installed.get(name) != locked.get(name)
    )
    if not drift:
        return ""
    shown = "; ".join(drift[:8]) + (f"; and {len(drift) - 8} more" if len(drift) > 8 else "")
    return f"dependency audit: note: this environment differs from the lock ({shown}): refresh it with `make lock`"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=PROJECT / "requirements.lock")
    parser.add_argument("--ignore-vuln", action="append", default=[], metavar="ID")
    parser.add_argument("--strict", action="store_true", default=os.environ.get("DUNNING_AUDIT_STRICT") == "1",
                        help="exit 1 when any package could not be audited")
    args = parser.parse_args(argv)

    lock_packages = read_lock(args.lock)
    packages = {normalized(p.name): p for p in lock_packages}
    pip_audit_problem = run_pip_audit(args.lock, packages)
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
    warning = stale_lock_warning(lock_packages)
    if warning:
        print(warning)

    summary = (
        f"{len(packages)} locked packages, {len(audited)} audited "
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
