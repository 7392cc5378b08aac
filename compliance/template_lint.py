"""The template lint: a compliance reviewer approves the message templates by
running one command.

    .venv/bin/python -m compliance.template_lint                 # config/templates
    .venv/bin/python -m compliance.template_lint --templates DIR # a proposed set

It prints one line per finding, `file:line: rule: message`, and exits 1 if
there is any; otherwise it prints "N templates in K languages checked, 0
findings" and exits 0.

The rules are data, in config/compliance/template_rules.toml:

- banned phrases (threats, arrest, police, lawsuits, blacklists, contacting
  family or employer, seizure, shaming, ...) in every language, searched in
  every template file, layouts included (rule `banned-phrase`);
- required and forbidden parts per form, checked in the *rendered* form (the
  real TemplateRenderer with a sample context, so what a layout adds counts):
  the pay link in SMS and e-mail and never in a voice script, the opt-out
  instruction in SMS, the unsubscribe line in e-mail, the "if you are not
  <borrower>, hang up" identity check at the start of a voice script (rules
  `missing-<part>`, `forbidden-<part>`, `misplaced-<part>`);
- the opt-out part of every channel a compliance profile (config/profiles)
  names in `opt_out_instruction_channels`;
- completeness: every language has every template a policy (config/policies)
  names, plus validation_notice, in every form of the channels the policies
  use (rule `missing-form`), and every language the rules know (rule
  `missing-language`).

Templates that do not parse, use a variable outside CONTEXT_KEYS, or fail to
render are reported too (`syntax-error`, `unknown-variable`, `render-error`).
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from activities.rendering import (
    CHANNEL_FORMS,
    CONTEXT_KEYS,
    FILTERS,
    FORMS,
    SUFFIX,
    TemplateMissing,
    TemplateRenderer,
    babel_locale,
    format_day,
    format_money,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATES = ROOT / "config" / "templates"
DEFAULT_RULES = ROOT / "config" / "compliance" / "template_rules.toml"
DEFAULT_POLICIES = ROOT / "config" / "policies"
DEFAULT_PROFILES = ROOT / "config" / "profiles"

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# An opt-out instruction belongs in a message's body, not its subject line.
_BODY_FORMS = {channel: tuple(f for f in forms if f != "email.subject") for channel, forms in CHANNEL_FORMS.items()}


@dataclass(frozen=True, order=True)
class LintFinding:
    file: str  # the template file (under the templates directory given), or the policy / profile file
    line: int  # 1-based; 0 when the file or directory is missing
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}"


class RulesError(ValueError):
    """template_rules.toml cannot be used; names the key."""


# ---------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Banned:
    category: str
    reason: str
    # (language the list belongs to, phrase, compiled pattern)
    phrases: tuple[tuple[str, str, re.Pattern[str]], ...]


@dataclass(frozen=True)
class Part:
    name: str
    description: str
    any: str | None
    by_language: Mapping[str, str]
    before: tuple[str, ...] = ()

    def template_for(self, language: str) -> str | None:
        return self.by_language.get(language, self.any)


@dataclass(frozen=True)
class Rules:
    languages: tuple[str, ...]
    required_templates: tuple[str, ...]
    banned: tuple[Banned, ...]
    ignore: tuple[re.Pattern[str], ...]
    parts: Mapping[str, Part]
    require: Mapping[str, tuple[str, ...]]  # form -> part names
    forbid: Mapping[str, tuple[str, ...]]
    opt_out_parts: Mapping[str, str]  # channel -> part name
    sample: Mapping[str, Any]
    sample_by_language: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Templates sent on some channels only (the pay link asked for on a
    # call goes by SMS): template -> channels. Required in every language.
    channel_templates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RulesError(f"{key} must be a list of non-empty strings")
    return tuple(value)


def _phrase_pattern(phrase: str, whole_word: bool) -> re.Pattern[str]:
    prefix = phrase.endswith("*")
    words = phrase.rstrip("*").strip().split()
    body = r"[\s\-]+".join(re.escape(w) for w in words) if whole_word else re.escape(phrase.rstrip("*"))
    if whole_word:
        body = r"(?<![\w])" + body + (r"[\w\-]*" if prefix else r"(?![\w])")
    return re.compile(body, re.IGNORECASE)


def _check_placeholders(text: str, key: str) -> None:
    unknown = set(_PLACEHOLDER.findall(text)) - CONTEXT_KEYS
    if unknown:
        raise RulesError(f"{key} names {sorted(unknown)}, which are not template variables")


def load_rules(path: Path) -> Rules:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"{path}: no such rules file") from None
    except tomllib.TOMLDecodeError as error:
        raise RulesError(f"{path}: {error}") from None
    try:
        return _parse_rules(data)
    except RulesError as error:
        raise RulesError(f"{path}: {error}") from None


def _parse_rules(data: Mapping[str, Any]) -> Rules:
    known = {
        "languages", "required_templates", "whole_word_languages", "ignore_patterns",
        "banned", "parts", "forms", "opt_out_parts", "sample", "channel_templates",
    }
    extra = set(data) - known
    if extra:
        raise RulesError(f"unknown keys {sorted(extra)}")
    languages = _strings(data.get("languages"), "languages")
    required = _strings(data["required_templates"], "required_templates") if data.get("required_templates") else ()
    for name in required:
        if not _TEMPLATE_NAME.match(name):
            raise RulesError(f"required_templates: {name!r} is not a template name")
    whole_word = set(_strings(data["whole_word_languages"], "whole_word_languages")) if data.get(
        "whole_word_languages"
    ) else set()
    try:
        patterns = _strings(data["ignore_patterns"], "ignore_patterns") if data.get("ignore_patterns") else ()
        ignore = tuple(re.compile(p, re.DOTALL) for p in patterns)
    except re.error as error:
        raise RulesError(f"ignore_patterns: {error}") from None

    banned: list[Banned] = []
    for index, entry in enumerate(data.get("banned") or []):
        key = f"banned[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("category"), str):
            raise RulesError(f"{key} needs a category")
        phrases = []
        for language, values in entry.items():
            if language in ("category", "reason"):
                continue
            if language not in languages:
                raise RulesError(f"{key}.{language}: not one of languages {list(languages)}")
            for phrase in _strings(values, f"{key}.{language}"):
                phrases.append((language, phrase, _phrase_pattern(phrase, language in whole_word)))
        banned.append(Banned(entry["category"], str(entry.get("reason", "")), tuple(phrases)))
    if not banned:
        raise RulesError("no [[banned]] phrases")

    parts: dict[str, Part] = {}
    for name, entry in (data.get("parts") or {}).items():
        key = f"parts.{name}"
        if not isinstance(entry, dict):
            raise RulesError(f"{key} must be a table")
        by_language = {k: v for k, v in entry.items() if k in languages}
        extra = set(entry) - set(by_language) - {"description", "any", "before"}
        if extra:
            raise RulesError(f"{key}: unknown keys {sorted(extra)} (languages are {list(languages)})")
        texts = dict(by_language) | ({"any": entry["any"]} if "any" in entry else {})
        for language, text in texts.items():
            if not isinstance(text, str) or not text.strip():
                raise RulesError(f"{key}.{language} must be a non-empty string")
            _check_placeholders(text, f"{key}.{language}")
        before = _strings(entry.get("before", []), f"{key}.before") if entry.get("before") else ()
        for text in before:
            _check_placeholders(text, f"{key}.before")
        if entry.get("any") is None and set(by_language) != set(languages):
            missing = sorted(set(languages) - set(by_language))
            raise RulesError(f"{key} has no text for {missing} and no `any`")
        parts[name] = Part(name, str(entry.get("description", name)), entry.get("any"), by_language, before)

    require: dict[str, tuple[str, ...]] = {}
    forbid: dict[str, tuple[str, ...]] = {}
    for form, entry in (data.get("forms") or {}).items():
        if form not in FORMS:
            raise RulesError(f"forms.{form}: not one of {list(FORMS)}")
        extra = set(entry) - {"require", "forbid"}
        if extra:
            raise RulesError(f"forms.{form}: unknown keys {sorted(extra)}")
        for kind, target in (("require", require), ("forbid", forbid)):
            names = _strings(entry.get(kind, []), f"forms.{form}.{kind}") if entry.get(kind) else ()
            for name in names:
                if name not in parts:
                    raise RulesError(f"forms.{form}.{kind}: no part {name!r} under [parts]")
            target[form] = names

    opt_out_parts = dict(data.get("opt_out_parts") or {})
    for channel, name in opt_out_parts.items():
        if channel not in CHANNEL_FORMS:
            raise RulesError(f"opt_out_parts.{channel}: not one of {list(CHANNEL_FORMS)}")
        if name not in parts:
            raise RulesError(f"opt_out_parts.{channel}: no part {name!r} under [parts]")

    sample = dict(data.get("sample") or {})
    by_language = sample.pop("language", {}) or {}
    for language in languages:
        keys = set(sample) | set(by_language.get(language, {}))
        if keys != CONTEXT_KEYS:
            raise RulesError(
                f"sample (with sample.language.{language}) must give exactly the template variables; "
                f"missing {sorted(CONTEXT_KEYS - keys)}, unknown {sorted(keys - CONTEXT_KEYS)}"
            )
    channel_templates = {}
    for name, channels in (data.get("channel_templates") or {}).items():
        if not _TEMPLATE_NAME.match(name):
            raise RulesError(f"channel_templates: {name!r} is not a template name")
        channel_templates[name] = _strings(channels, f"channel_templates.{name}")
        unknown = [c for c in channel_templates[name] if c not in CHANNEL_FORMS]
        if unknown:
            raise RulesError(f"channel_templates.{name}: {unknown} not in {list(CHANNEL_FORMS)}")
    return Rules(
        channel_templates=channel_templates,
        languages=languages,
        required_templates=required,
        banned=tuple(banned),
        ignore=ignore,
        parts=parts,
        require=require,
        forbid=forbid,
        opt_out_parts=opt_out_parts,
        sample=sample,
        sample_by_language=by_language,
    )


def sample_contexts(rules: Rules, language: str) -> list[dict[str, Any]]:
    """The contexts a language's forms are rendered with (one per sample days_past_due)."""
    values = dict(rules.sample) | dict(rules.sample_by_language.get(language, rules.sample_by_language.get("en", {})))
    try:
        values["amount"] = Decimal(str(values["amount"]))
        due = values["due_date"]
        values["due_date"] = due if isinstance(due, date) else date.fromisoformat(str(due))
    except (KeyError, InvalidOperation, ValueError) as error:
        raise RulesError(f"sample: bad amount or due_date ({error})") from None
    days = values.pop("days_past_due", 1)
    return [values | {"days_past_due": int(d)} for d in (days if isinstance(days, list) else [days])]


def _display(context: Mapping[str, Any], name: str, language: str) -> str:
    value = context[name]
    if name == "amount":
        return format_money(value, context["currency"], babel_locale(language))
    if name == "due_date":
        return format_day(value, babel_locale(language))
    return str(value)


def _part_text(part: Part, language: str, context: Mapping[str, Any]) -> str | None:
    template = part.template_for(language)
    if template is None:
        return None
    return _PLACEHOLDER.sub(lambda m: _display(context, m.group(1), language), template)


# ----------------------------------------------------------------------- lint


def lint_templates(
    templates_dir: Path,
    rules_path: Path,
    *,
    policies_dir: Path | None = DEFAULT_POLICIES,
    profiles_dir: Path | None = DEFAULT_PROFILES,
) -> list[LintFinding]:
    """Every finding for the templates under `templates_dir`, sorted by file and line.

    Raises RulesError when the rules file itself is unusable, and
    FileNotFoundError when there is no templates directory."""
    rules = load_rules(rules_path)
    templates_dir = Path(templates_dir)
    renderer = TemplateRenderer(templates_dir, auto_reload=False)
    findings: set[LintFinding] = set()

    def report(path: Path | str, line: int, rule: str, message: str) -> None:
        findings.add(LintFinding(str(path), line, rule, message))

    def template_path(language: str, template: str, form: str) -> Path:
        return templates_dir / language / f"{template}.{form}{SUFFIX}"

    # Languages.
    present = renderer.languages()
    for language in rules.languages:
        if language not in present:
            report(templates_dir / language, 0, "missing-language", f"no {language} templates (the rules require {language})")
    for language in present:
        if language not in rules.languages:
            report(
                templates_dir / language, 0, "unknown-language",
                f"{language} has no banned phrases or required parts in the rules; add it to `languages`",
            )

    # What the policies use, and what the profiles require.
    used, policy_languages = _policy_usage(policies_dir, report)
    required_forms = sorted(
        {form for channel, _ in used for form in CHANNEL_FORMS[channel]} or set(FORMS),
        key=FORMS.index,
    )
    for language in sorted(policy_languages):
        if language not in present:
            report(templates_dir / language, 0, "missing-language", f"a policy's default_language is {language}")
    extra_require = _profile_opt_outs(profiles_dir, rules, report)

    # Completeness.
    names = renderer.names()
    templates = {t for _, t, _ in names} | {t for _, t in used} | set(rules.required_templates)
    templates |= set(rules.channel_templates)
    why: dict[str, str] = {}
    for channel, template in sorted(used):
        why[template] = (why[template] + ", " if template in why else "a policy's ") + f"{channel} step"
    for template in rules.required_templates:
        why.setdefault(template, "required_templates in the rules")
    for template in rules.channel_templates:
        why.setdefault(template, "channel_templates in the rules")
    for language in present:
        for template in sorted(templates):
            forms = required_forms
            if template in rules.channel_templates:
                forms = [f for c in rules.channel_templates[template] for f in CHANNEL_FORMS[c]]
            for form in forms:
                if (language, template, form) not in names:
                    source = why.get(template, f"other languages have {template}")
                    report(
                        template_path(language, template, form), 0, "missing-form",
                        f"{language} has no {form} form of {template} (needed by: {source})",
                    )

    # Every file: syntax, variables, banned phrases.
    parser = SandboxedEnvironment()
    parser.filters.update(FILTERS)
    for language in present:
        for path in sorted((templates_dir / language).iterdir()):
            if not path.is_file():
                continue
            if not path.name.endswith(SUFFIX):
                report(path, 1, "unknown-file", f"not a template (templates end in {SUFFIX})")
                continue
            stem = path.name[: -len(SUFFIX)]
            if not stem.startswith("_") and not any(
                stem.endswith("." + f) and _TEMPLATE_NAME.match(stem[: -len(f) - 1]) for f in FORMS
            ):
                report(path, 1, "unknown-file", f"not <template>.<form>{SUFFIX} with a form in {', '.join(FORMS)}")
            source = path.read_text(encoding="utf-8")
            _check_source(path, source, rules, parser, report)

    # Every form, rendered as it is sent.
    checked_languages = [lang for lang in present if lang in rules.languages]
    for language, template, form in sorted(names):
        if language not in checked_languages:
            continue
        path = template_path(language, template, form)
        source = path.read_text(encoding="utf-8")
        channel = next(c for c, forms in CHANNEL_FORMS.items() if form in forms)
        require = list(rules.require.get(form, ()))
        require += [p for c, p, forms in extra_require if c == channel and form in forms and p not in require]
        for context in sample_contexts(rules, language):
            try:
                rendered = renderer.render_form(language, template, form, context)
            except TemplateMissing as error:
                report(path, 1, "render-error", str(error))
                break
            except TemplateSyntaxError:
                break  # reported with its line by _check_source
            except Exception as error:  # noqa: BLE001 - any failure to render is a finding
                report(path, 1, "render-error", f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
                break
            text = (html.unescape(rendered) if form.endswith("html") else rendered).casefold()
            for name in require:
                part = rules.parts[name]
                wanted = _part_text(part, language, context)
                if wanted is None:
                    continue
                at = text.find(wanted.casefold())
                if at < 0:
                    report(path, 1, f"missing-{_slug(name)}", f"no {part.description} (\"{wanted}\") in the {form}")
                    continue
                for item in part.before:
                    later = _PLACEHOLDER.sub(lambda m: _display(context, m.group(1), language), item).casefold()
                    first = text.find(later)
                    if 0 <= first < at:
                        report(
                            path, _line_of(source, part_marker(item)), f"misplaced-{_slug(name)}",
                            f"{part.description} must come before {item.strip('{}')} is mentioned",
                        )
            for name in rules.forbid.get(form, ()):
                part = rules.parts[name]
                unwanted = _part_text(part, language, context)
                if unwanted and unwanted.casefold() in text:
                    marker = part_marker(part.template_for(language) or "")
                    report(
                        path, _line_of(source, marker), f"forbidden-{_slug(name)}",
                        f"{part.description} must not be in a {form} form",
                    )
    return sorted(findings)


def part_marker(text: str) -> str:
    """What to look for in a template's source for a part: its variable, or its text."""
    names = _PLACEHOLDER.findall(text)
    return names[0] if names else text


def _line_of(source: str, needle: str) -> int:
    if needle:
        at = source.casefold().find(needle.casefold())
        if at >= 0:
            return source.count("\n", 0, at) + 1
    return 1


def _slug(name: str) -> str:
    return name.replace("_", "-")


def _blank(source: str, patterns: Iterable[re.Pattern[str]]) -> str:
    """Blank what no reader sees, keeping every character's line."""
    for pattern in patterns:
        source = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)
    return source


def _check_source(path: Path, source: str, rules: Rules, parser: SandboxedEnvironment, report) -> None:
    try:
        undeclared = meta.find_undeclared_variables(parser.parse(source))
    except TemplateSyntaxError as error:  # also an unknown filter (TemplateAssertionError)
        report(path, error.lineno or 1, "syntax-error", error.message or "does not parse")
    else:
        for name in sorted(undeclared - CONTEXT_KEYS):
            report(path, _line_of(source, name), "unknown-variable", f"{name} is not a template variable ({', '.join(sorted(CONTEXT_KEYS))})")
    visible = _blank(source, rules.ignore)
    for banned in rules.banned:
        for language, phrase, pattern in banned.phrases:
            for match in pattern.finditer(visible):
                line = visible.count("\n", 0, match.start()) + 1
                report(
                    path, line, "banned-phrase",
                    f"\"{match.group(0)}\" ({banned.category}, {language} \"{phrase}\"): {banned.reason}",
                )


def _policy_usage(policies_dir: Path | None, report) -> tuple[set[tuple[str, str]], set[str]]:
    """(channel, template) of every step of every policy, and the policies' default languages."""
    from dunning.policy import PolicyError  # the core, only when policies are checked
    from loaders.config_files import load_policy

    steps: set[tuple[str, str]] = set()
    languages: set[str] = set()
    if policies_dir is None:
        return steps, languages
    policies_dir = Path(policies_dir)
    if not policies_dir.is_dir():
        report(policies_dir, 0, "policy-error", "no policies directory")
        return steps, languages
    for path in sorted(policies_dir.glob("*.toml")):
        try:
            policy = load_policy(path.stem, policies_dir)
        except (PolicyError, OSError, ValueError) as error:
            report(path, 1, "policy-error", str(error).splitlines()[0])
            continue
        languages.add(policy.default_language)
        for stage_name in type(policy.stages).model_fields:
            for step in policy.stage(stage_name).steps:
                steps.add((step.channel, step.template))
    return steps, languages


def _profile_opt_outs(profiles_dir: Path | None, rules: Rules, report) -> list[tuple[str, str, tuple[str, ...]]]:
    """(channel, part, body forms) for every channel a profile wants an opt-out instruction in."""
    if profiles_dir is None:
        return []
    from dunning.compliance import ProfileError
    from loaders.config_files import load_profile

    profiles_dir = Path(profiles_dir)
    if not profiles_dir.is_dir():
        report(profiles_dir, 0, "profile-error", "no profiles directory")
        return []
    out: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    for path in sorted(profiles_dir.glob("*.toml")):
        try:
            profile = load_profile(path.stem, profiles_dir)
        except (ProfileError, OSError, ValueError) as error:
            report(path, 1, "profile-error", str(error).splitlines()[0])
            continue
        for channel in profile.notices.opt_out_instruction_channels:
            part = rules.opt_out_parts.get(channel)
            if part is None:
                report(
                    path, _line_of(path.read_text(encoding="utf-8"), "opt_out_instruction_channels"),
                    "opt-out-rule-missing",
                    f"profile {profile.name} requires an opt-out instruction in {channel}, "
                    f"but template_rules.toml [opt_out_parts] names no part for it",
                )
                continue
            out[channel] = (channel, part, _BODY_FORMS[channel])
    return list(out.values())


# ----------------------------------------------------------------------- main


def _shown(path: Path) -> Path:
    """A path relative to the working directory when it is under it."""
    try:
        return Path(os.path.relpath(path)) if Path(path).resolve().is_relative_to(Path.cwd()) else Path(path)
    except ValueError:
        return Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compliance.template_lint",
        description="Check the message templates against the compliance rules (banned phrases, required parts).",
    )
    parser.add_argument("--templates", type=Path, default=None, help="templates directory (default: config/templates)")
    parser.add_argument("--rules", type=Path, default=None, help="rules file (default: config/compliance/template_rules.toml)")
    parser.add_argument("--policies", type=Path, default=None, help="policies directory (default: config/policies)")
    parser.add_argument("--profiles", type=Path, default=None, help="compliance profiles directory (default: config/profiles)")
    args = parser.parse_args(argv)

    templates = args.templates if args.templates is not None else _shown(DEFAULT_TEMPLATES)
    rules = args.rules if args.rules is not None else _shown(DEFAULT_RULES)
    policies = args.policies if args.policies is not None else _shown(DEFAULT_POLICIES)
    profiles = args.profiles if args.profiles is not None else _shown(DEFAULT_PROFILES)
    try:
        findings = lint_templates(templates, rules, policies_dir=policies, profiles_dir=profiles)
    except (RulesError, FileNotFoundError) as error:
        print(f"template_lint: {error}", file=sys.stderr)
        return 2

    names = TemplateRenderer(templates).names()
    count = len({t for _, t, _ in names})
    languages = len({lang for lang, _, _ in names})
    for finding in findings:
        print(finding)
    summary = f"{count} templates in {languages} languages checked, {len(findings)} finding{'' if len(findings) == 1 else 's'}"
    if findings:
        print(summary, file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
