"""The environment the tests run in is exactly requirements.lock (issue 12, item 4).

make install installs the lock with --require-hashes --no-deps and the project
with --no-deps; scripts/check_lock.py is what notices any difference. These
tests run it on this interpreter, and feed it drifted locks, pyprojects and
installed sets to show that it names each difference.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SCRIPT = PROJECT / "scripts" / "check_lock.py"

_spec = importlib.util.spec_from_file_location("check_lock", SCRIPT)
check_lock = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("check_lock", check_lock)
_spec.loader.exec_module(check_lock)

FAKE_HASH_A = "sha256:" + "0123456789abcdef" * 4
FAKE_HASH_B = "sha256:" + "fedcba9876543210" * 4


def hashed_lock(pins: dict[str, str]) -> str:
    """A lock in pip-compile's --generate-hashes format, with a header, an option line and # via comments."""
    lines = [
        "# a lock written by the test",
        "#",
        "#    make lock",
        "#",
        "--index-url https://pypi.org/simple",
        "",
    ]
    for name, version in sorted(pins.items()):
        lines += [
            f"{name}=={version} \\",
            f"    --hash={FAKE_HASH_A} \\",
            f"    --hash={FAKE_HASH_B}",
            "    # via",
            "    #   dunning (pyproject.toml)",
            "    #   something-else",
        ]
    return "\n".join(lines) + "\n"


def installed_pins() -> dict[str, str]:
    """This interpreter's installed distributions, name -> version, without the project."""
    return {
        dists[0].metadata["Name"]: dists[0].version
        for key, dists in check_lock.installed_distributions().items()
        if key != check_lock.PROJECT_NAME
    }


def test_this_environment_is_the_lock():
    problems = check_lock.check()
    assert problems == [], "this environment is not requirements.lock:\n" + "\n".join(problems)


def test_the_lock_is_hashed_and_pins_every_package_including_the_build_backend():
    text = (PROJECT / "requirements.lock").read_text()
    pins = check_lock.read_lock(PROJECT / "requirements.lock")
    requirement_lines = [line for line in text.splitlines() if line[:1].isalnum()]
    assert len(pins) == len(requirement_lines) > 50
    assert text.count("--hash=sha256:") >= len(pins)
    assert {"pip", "setuptools", "pytest", "temporalio"} <= set(pins)
    header = "\n".join(line for line in text.splitlines()[:20] if line.startswith("#"))
    assert "make lock" in header  # the header says how to refresh it


def test_the_checker_names_a_changed_a_missing_and_an_extra_package(tmp_path, capsys):
    pins = installed_pins()
    assert "structlog" in pins and "pytest" in pins, "the dependencies this test drifts are not installed"
    real_structlog = pins["structlog"]
    pins["structlog"] = "1.0"  # a different version (and one pyproject.toml's structlog>=24.1 forbids)
    del pins["pytest"]  # installed, but no longer locked: an extra
    pins["not-a-real-package"] = "1.0"  # locked, but not installed: missing
    lock = tmp_path / "requirements.lock"
    lock.write_text(hashed_lock(pins))

    assert set(check_lock.read_lock(lock)) == {check_lock.normalize(name) for name in pins}
    problems = check_lock.installed_vs_lock(check_lock.installed_distributions(), check_lock.read_lock(lock))
    assert sorted(problems) == sorted([
        f"different: structlog {real_structlog} is installed, 1.0 is locked",
        f"extra: pytest {installed_pins()['pytest']} is installed, but not locked",
        "missing: not-a-real-package==1.0 is locked, but not installed",
    ])

    everything = check_lock.check(lock=lock, pyproject=PROJECT / "pyproject.toml")
    assert set(problems) <= set(everything)
    out_of_date = [p for p in everything if p.startswith("lock out of date")]
    assert len(out_of_date) == 2, everything
    assert any("structlog>=24.1" in p and "structlog==1.0" in p for p in out_of_date), out_of_date
    assert any("pytest>=8" in p and "not in requirements.lock" in p for p in out_of_date), out_of_date

    assert check_lock.main(["--lock", str(lock)]) == 1
    printed = capsys.readouterr().out
    for name in ("structlog", "pytest", "not-a-real-package"):
        assert f"check_lock: {'different' if name == 'structlog' else 'extra' if name == 'pytest' else 'missing'}: {name}" in printed
    assert "FAILED" in printed


def test_the_checker_passes_a_lock_equal_to_what_is_installed(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(hashed_lock(installed_pins()))
    assert check_lock.installed_vs_lock(check_lock.installed_distributions(), check_lock.read_lock(lock)) == []


def test_the_lock_must_pin_every_pyproject_requirement(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\n'
        '[project]\nname = "x"\nversion = "1"\n'
        'dependencies = ["alpha>=2,<3", "beta[fast]", "gamma; python_version < \'3.0\'"]\n'
        '[project.optional-dependencies]\ndev = ["delta>=1"]\nother = ["epsilon"]\n'
    )
    pins = {"alpha": check_lock.Pin("alpha", "3.0"), "beta": check_lock.Pin("beta", "1.0"),
            "setuptools": check_lock.Pin("setuptools", "67.0")}
    problems = check_lock.lock_vs_pyproject(pyproject, pins)
    assert len(problems) == 3, problems
    assert any("alpha<3,>=2" in p and "alpha==3.0" in p for p in problems), problems
    assert any("delta>=1" in p and "the dev extra" in p and "not in requirements.lock" in p for p in problems)
    assert any("setuptools>=68" in p and "[build-system]" in p for p in problems), problems
    # gamma's marker excludes it here, and the other extra is not installed: neither is asked for
    assert not any("gamma" in p or "epsilon" in p for p in problems)


def test_the_lock_reader_refuses_what_is_not_a_pin(tmp_path):
    for text in ("foo>=1\n", "foo\n", "-e .\n", "-r other.txt\n", "foo==1.*\n", "foo==1 \\\n    --hash=sha256:00\nfoo==2\n"):
        lock = tmp_path / "requirements.lock"
        lock.write_text(text)
        with pytest.raises(ValueError):
            check_lock.read_lock(lock)
    lock.write_text("bar==1.0 ; python_version < '3.0'\nFoo_Bar.baz==2.0  # a comment\n")
    assert check_lock.read_lock(lock) == {"foo-bar-baz": check_lock.Pin("Foo_Bar.baz", "2.0")}


def write_dist(site: Path, name: str, version: str, requires: list[str]) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_the_checker_names_unmet_dependencies_and_packages_installed_twice(tmp_path):
    site = tmp_path / "site-packages"
    write_dist(site, "app", "1.0", ["lib>=2", "plugin[extra]", "unused; extra == 'never'"])
    write_dist(site, "lib", "1.5", [])
    write_dist(site, "plugin", "1.0", ["helper; extra == 'extra'", "lib"])
    installed = check_lock.installed_distributions([str(site)])
    assert check_lock.unmet_dependencies(installed, root="app", root_extras=()) == [
        "unmet: app 1.0 requires lib>=2, but lib 1.5 is installed",
        'unmet: plugin 1.0 requires helper; extra == "extra", which is not installed',
    ]

    write_dist(site, "helper", "1.0", [])
    write_dist(site, "Helper", "2.0", [])  # a second copy's metadata, e.g. left by a broken upgrade
    installed = check_lock.installed_distributions([str(site)])
    pins = {key: check_lock.Pin(key, "1.0") for key in ("app", "lib", "plugin", "helper")}
    problems = check_lock.installed_vs_lock(installed, pins, ignore=())
    assert any(p.startswith("installed twice: helper") for p in problems), problems
    assert "different: lib 1.5 is installed, 1.0 is locked" in problems
    assert len(problems) == 2, problems
