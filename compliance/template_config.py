"""What the policies and compliance profiles ask of the templates, for the
template lint: the (channel, template) of every policy step and the
policies' languages (config/policies), and the channels whose messages a
profile wants an opt-out instruction in (config/profiles). A file that does
not load is a finding (`policy-error`, `profile-error`), not a crash."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from activities.rendering import CHANNEL_FORMS
from compliance.template_rules import Rules

Report = Callable[[Path | str, int, str, str], None]

# An opt-out instruction belongs in a message's body, not its subject line.
BODY_FORMS = {channel: tuple(f for f in forms if f != "email.subject") for channel, forms in CHANNEL_FORMS.items()}


def line_of(source: str, needle: str) -> int:
    """The 1-based line of the first `needle` in `source` (case-insensitive); 1 if absent."""
    if needle:
        at = source.casefold().find(needle.casefold())
        if at >= 0:
            return source.count("\n", 0, at) + 1
    return 1


def _each_file(
    directory: Path | None, what: str, rule: str, load: Callable[[str, Path], Any], errors: tuple, report: Report
) -> Iterator[tuple[Path, Any]]:
    """(path, loaded) for every `*.toml` of a policies or profiles directory
    (`what`); one that does not load, or a missing directory, is a `rule` finding."""
    if directory is None:
        return
    directory = Path(directory)
    if not directory.is_dir():
        report(directory, 0, rule, f"no {what} directory")
        return
    for path in sorted(directory.glob("*.toml")):
        try:
            loaded = load(path.stem, directory)
        except (*errors, OSError, ValueError) as error:
            report(path, 1, rule, str(error).splitlines()[0])
            continue
        yield path, loaded


def policy_usage(policies_dir: Path | None, report: Report) -> tuple[set[tuple[str, str]], set[str]]:
    """(channel, template) of every step of every policy, and the policies' default languages."""
    from dunning.policy import PolicyError  # the core, only when policies are checked
    from loaders.config_files import load_policy

    steps: set[tuple[str, str]] = set()
    languages: set[str] = set()
    for _, policy in _each_file(policies_dir, "policies", "policy-error", load_policy, (PolicyError,), report):
        languages.add(policy.default_language)
        for stage_name in type(policy.stages).model_fields:
            for step in policy.stage(stage_name).steps:
                steps.add((step.channel, step.template))
    return steps, languages


def profile_opt_outs(profiles_dir: Path | None, rules: Rules, report: Report) -> list[tuple[str, str, tuple[str, ...]]]:
    """(channel, part, body forms) for every channel a profile wants an opt-out instruction in."""
    from dunning.compliance import ProfileError
    from loaders.config_files import load_profile

    out: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for path, profile in _each_file(profiles_dir, "profiles", "profile-error", load_profile, (ProfileError,), report):
        for channel in profile.notices.opt_out_instruction_channels:
            part = rules.opt_out_parts.get(channel)
            if part is None:
                report(
                    path, line_of(path.read_text(encoding="utf-8"), "opt_out_instruction_channels"),
                    "opt-out-rule-missing",
                    f"profile {profile.name} requires an opt-out instruction in {channel}, "
                    f"but template_rules.toml [opt_out_parts] names no part for it",
                )
                continue
            out[channel] = (channel, part, BODY_FORMS[channel])
    return list(out.values())
