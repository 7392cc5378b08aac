"""The template lint: a compliance reviewer approves the message templates by
running one command.

    .venv/bin/python -m compliance.template_lint                 # config/templates
    .venv/bin/python -m compliance.template_lint --templates DIR # a proposed set

It prints one line per finding, `file:line: rule: message`, and exits 1 if
there is any; otherwise it prints "N templates in K languages checked, 0
findings" and exits 0.

The rules are data, in config/compliance/template_rules.toml (read by
compliance/template_rules.py):

- banned phrases (threats, arrest, police, lawsuits, blacklists, contacting
  family or employer, seizure, shaming, ...) in every language, searched in
  every template file, layouts included (rule `banned-phrase`);
- required and forbidden parts per form, checked in the *rendered* form (the
  real TemplateRenderer with a sample context, so what a layout adds counts):
  the pay link in SMS and e-mail and never in a voice script or a keypad
  answer, the opt-out instruction in SMS, the unsubscribe line in e-mail, the
  "if you are not <borrower>, hang up" identity check at the start of a voice
  script (rules `missing-<part>`, `forbidden-<part>`, `misplaced-<part>`);
- the opt-out part of every channel a compliance profile (config/profiles)
  names in `opt_out_instruction_channels` (compliance/template_config.py);
- completeness: every language has every template a policy (config/policies)
  names, plus validation_notice, in every form of the channels the policies
  use (rule `missing-form`), and every language the rules know (rule
  `missing-language`).

Forms of no channel have rules of their own: `ivr` (keypad_*.ivr.j2, what a
call says after the borrower presses a key, gateway/ivr.py) follows the
borrower's identity check of the call's voice script, so it needs no check of
its own; it takes no template variables (the gateway answers without reading
the borrower's record), and a template that has only such forms is needed in
every language in those forms only.

Message privacy (compliance/template_lint_privacy.py; rules in
config/compliance/message_privacy.toml): the first line of every SMS and push
obeys each profile's [privacy] first_line (rule `first-line-privacy`), and
every SMS, push, e-mail and voice script carries the 12 CFR 1006.18(e)
debt-collector disclosure under `{% if debt_collector %}` (rules
`missing-`, `unconditional-`, `misplaced-debt-collector-disclosure`).

Time-barred debt (compliance/template_lint_limitation.py; rules in
template_rules.toml [time_barred], issue 18 item 2): every form rendered with
`time_barred` true threatens no suit (rule `time-barred-threat`, 12 CFR
1006.26(b)) and carries the limitation disclosure under `{% if time_barred %}`
(`missing-`, `unconditional-`, `misplaced-limitation-disclosure`); every
disclosure a profile names exists (`unknown-limitation-disclosure`).

Templates that do not parse, use a variable outside CONTEXT_KEYS, or fail to
render are reported too (`syntax-error`, `unknown-variable`, `render-error`).
"""

from __future__ import annotations

import argparse
import functools
import html
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from activities.rendering import CHANNEL_FORMS, CONTEXT_KEYS, FILTERS, FORMS, SUFFIX, TemplateMissing, TemplateRenderer
from compliance.template_config import Report, line_of, policy_usage, profile_opt_outs
from compliance.template_lint_limitation import check_disclosure_keys, check_time_barred
from compliance.template_lint_privacy import DEFAULT_PRIVACY_RULES, check_message_privacy
from compliance.template_rules import TEMPLATE_NAME, Rules, RulesError, banned_matches, load_rules
from compliance.template_rules import part_marker, part_text, sample_contexts, with_sample

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATES = ROOT / "config" / "templates"
DEFAULT_RULES = ROOT / "config" / "compliance" / "template_rules.toml"
DEFAULT_POLICIES = ROOT / "config" / "policies"
DEFAULT_PROFILES = ROOT / "config" / "profiles"
DEFAULT_DISCLOSURES = ROOT / "config" / "compliance" / "limitation_disclosures.toml"

CHANNEL_OF = {form: channel for channel, forms in CHANNEL_FORMS.items() for form in forms}
# The variables a form may use where it is not CONTEXT_KEYS: a keypad answer
# is rendered with no context at all.
FORM_VARIABLES: dict[str, frozenset[str]] = {"ivr": frozenset()}


@dataclass(frozen=True, order=True)
class LintFinding:
    file: str  # the template file (under the templates directory given), or the policy / profile file
    line: int  # 1-based; 0 when the file or directory is missing
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.rule}: {self.message}"


def _slug(name: str) -> str:
    return name.replace("_", "-")


def _form_of(path: Path) -> str | None:
    """The form a template file is of; None for a layout or a file that is not a template."""
    stem = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else ""
    if stem.startswith("_"):
        return None
    return next((f for f in FORMS if stem.endswith("." + f) and TEMPLATE_NAME.match(stem[: -len(f) - 1])), None)


# ----------------------------------------------------------------------- lint


def lint_templates(
    templates_dir: Path,
    rules_path: Path,
    *,
    policies_dir: Path | None = DEFAULT_POLICIES,
    profiles_dir: Path | None = DEFAULT_PROFILES,
    privacy_path: Path = DEFAULT_PRIVACY_RULES,
    disclosures_path: Path = DEFAULT_DISCLOSURES,
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

    present = renderer.languages()
    _check_languages(templates_dir, rules, present, report)
    used, policy_languages = policy_usage(policies_dir, report)
    for language in sorted(policy_languages):
        if language not in present:
            report(templates_dir / language, 0, "missing-language", f"a policy's default_language is {language}")
    extra_require = profile_opt_outs(profiles_dir, rules, report)
    _check_completeness(templates_dir, rules, renderer, present, used, report)
    _check_files(templates_dir, rules, present, report)
    _check_rendered(templates_dir, rules, renderer, present, extra_require, report)
    check_message_privacy(templates_dir, rules, renderer, present, profiles_dir, report, privacy_path)
    check_time_barred(templates_dir, rules, renderer, present, report)
    check_disclosure_keys(profiles_dir, Path(disclosures_path), report)
    return sorted(findings)


def _template_path(templates_dir: Path, language: str, template: str, form: str) -> Path:
    return templates_dir / language / f"{template}.{form}{SUFFIX}"


def _check_languages(templates_dir: Path, rules: Rules, present: list[str], report: Report) -> None:
    for language in rules.languages:
        if language not in present:
            report(templates_dir / language, 0, "missing-language", f"no {language} templates (the rules require {language})")
    for language in present:
        if language not in rules.languages:
            report(
                templates_dir / language, 0, "unknown-language",
                f"{language} has no banned phrases or required parts in the rules; add it to `languages`",
            )


def _check_completeness(
    templates_dir: Path, rules: Rules, renderer: TemplateRenderer, present: list[str],
    used: set[tuple[str, str]], report: Report,
) -> None:
    """Every template in every language, in every form it is sent in."""
    names = renderer.names()
    channel_forms = sorted(
        {form for channel, _ in used for form in CHANNEL_FORMS[channel]} or set(CHANNEL_OF), key=FORMS.index
    )
    # Forms of no channel (keypad answers) are needed wherever another
    # language has them; a template that has only those is needed in no other form.
    own_forms: dict[str, set[str]] = {}
    for _, template, form in names:
        own_forms.setdefault(template, set()).add(form)
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
            own = own_forms.get(template, set())
            forms = channel_forms
            if template in rules.channel_templates:
                forms = [f for c in rules.channel_templates[template] for f in CHANNEL_FORMS[c]]
            elif template not in why and not own & set(CHANNEL_OF):
                forms = []
            for form in [*forms, *sorted(own - set(CHANNEL_OF), key=FORMS.index)]:
                if (language, template, form) not in names:
                    source = why.get(template, f"other languages have {template}")
                    report(
                        _template_path(templates_dir, language, template, form), 0, "missing-form",
                        f"{language} has no {form} form of {template} (needed by: {source})",
                    )


def _check_files(templates_dir: Path, rules: Rules, present: list[str], report: Report) -> None:
    """Every file: its name, syntax, variables and banned phrases."""
    parser = SandboxedEnvironment()
    parser.filters.update(FILTERS)
    for language in present:
        for path in sorted((templates_dir / language).iterdir()):
            if not path.is_file():
                continue
            if not path.name.endswith(SUFFIX):
                report(path, 1, "unknown-file", f"not a template (templates end in {SUFFIX})")
                continue
            form = _form_of(path)
            if form is None and not path.name.startswith("_"):
                report(path, 1, "unknown-file", f"not <template>.<form>{SUFFIX} with a form in {', '.join(FORMS)}")
            source = path.read_text(encoding="utf-8")
            _check_source(path, source, form, rules, parser, report)


@functools.lru_cache(maxsize=4096)
def _undeclared(source: str) -> frozenset[str]:
    """The variables a template's source uses without setting them. Kept by
    source: the tests lint copies of the same tree many times over."""
    parser = SandboxedEnvironment()
    parser.filters.update(FILTERS)
    return frozenset(meta.find_undeclared_variables(parser.parse(source)))


def _check_source(
    path: Path, source: str, form: str | None, rules: Rules, parser: SandboxedEnvironment, report: Report
) -> None:
    try:
        undeclared = _undeclared(source)
    except TemplateSyntaxError as error:  # also an unknown filter (TemplateAssertionError)
        report(path, error.lineno or 1, "syntax-error", error.message or "does not parse")
    else:
        allowed = FORM_VARIABLES.get(form or "", CONTEXT_KEYS)
        for name in sorted(undeclared - allowed):
            known = f"({', '.join(sorted(allowed))})" if allowed else f"(the {form} form takes none)"
            report(path, line_of(source, name), "unknown-variable", f"{name} is not a template variable {known}")
    for banned, language, phrase, match in banned_matches(rules, source):
        line = source.count("\n", 0, match.start()) + 1
        report(
            path, line, "banned-phrase",
            f"\"{match.group(0)}\" ({banned.category}, {language} \"{phrase}\"): {banned.reason}",
        )


def _check_rendered(
    templates_dir: Path, rules: Rules, renderer: TemplateRenderer, present: list[str],
    extra_require: list[tuple[str, str, tuple[str, ...]]], report: Report,
) -> None:
    """Every form, rendered as it is sent: its required and forbidden parts."""
    for language, template, form in sorted(renderer.names()):
        if language not in present or language not in rules.languages:
            continue
        path = _template_path(templates_dir, language, template, form)
        source = path.read_text(encoding="utf-8")
        channel = CHANNEL_OF.get(form)
        require = list(rules.require.get(form, ()))
        require += [p for c, p, forms in extra_require if c == channel and form in forms and p not in require]
        forbid = list(rules.forbid.get(form, ()))
        if template in rules.no_pay_link_templates:
            # A notice that must not ask for payment (no_pay_link_templates).
            require = [p for p in require if p != "pay_link"]
            forbid += [] if "pay_link" in forbid else ["pay_link"]
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
                wanted = part_text(part, language, context)
                if wanted is None:
                    continue
                at = text.find(wanted.casefold())
                if at < 0:
                    report(path, 1, f"missing-{_slug(name)}", f"no {part.description} (\"{wanted}\") in the {form}")
                    continue
                for item in part.before:
                    first = text.find(with_sample(item, language, context).casefold())
                    if 0 <= first < at:
                        report(
                            path, line_of(source, part_marker(item)), f"misplaced-{_slug(name)}",
                            f"{part.description} must come before {item.strip('{}')} is mentioned",
                        )
            for name in forbid:
                part = rules.parts[name]
                unwanted = part_text(part, language, context)
                if unwanted and unwanted.casefold() in text:
                    marker = part_marker(part.template_for(language) or "")
                    report(
                        path, line_of(source, marker), f"forbidden-{_slug(name)}",
                        f"{part.description} must not be in a {form} form",
                    )


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
    parser.add_argument("--privacy", type=Path, default=None, help="message privacy rules (default: config/compliance/message_privacy.toml)")
    args = parser.parse_args(argv)

    templates = args.templates if args.templates is not None else _shown(DEFAULT_TEMPLATES)
    rules = args.rules if args.rules is not None else _shown(DEFAULT_RULES)
    policies = args.policies if args.policies is not None else _shown(DEFAULT_POLICIES)
    profiles = args.profiles if args.profiles is not None else _shown(DEFAULT_PROFILES)
    privacy = args.privacy if args.privacy is not None else _shown(DEFAULT_PRIVACY_RULES)
    try:
        findings = lint_templates(templates, rules, policies_dir=policies, profiles_dir=profiles, privacy_path=privacy)
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
