"""The template lint's message privacy checks (rules:
config/compliance/message_privacy.toml, read by activities/message_privacy.py,
which the send activity uses too):

- `first-line-privacy`: for every compliance profile under config/profiles
  whose [privacy] first_line is not `full`, and every language, the first
  line of every SMS and push template, rendered with the sample context and a
  recognisable amount (with the debt collector's disclosure on and off),
  obeys the profile's mode. The validation notice is checked under a profile
  only on the channels that profile sends it by (notices
  validation_notice_channels, when it sends one at all).
- `missing-debt-collector-disclosure` / `unconditional-debt-collector-disclosure`
  / `misplaced-debt-collector-disclosure` (12 CFR 1006.18(e)): every SMS,
  push, e-mail body and voice script (the validation notice excepted: it has
  its own) says it is from a debt collector when rendered with
  `debt_collector` true, says nothing of it when false, never on the first
  line of an SMS or push, and in a voice script only after the identity check.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from activities.message_privacy import (
    DEFAULT_RULES as DEFAULT_PRIVACY_RULES,
    FULL,
    PrivacyRules,
    PrivacyRulesError,
    first_line,
    load_privacy_rules,
    violations,
)
from activities.rendering import SUFFIX, TemplateRenderer
from compliance.template_config import Report, _each_file
from compliance.template_rules import Rules, RulesError, disclosure_misplaced, sample_contexts

# A sample amount no template text holds by chance, so the lint finds it
# however a template writes it.
LINT_AMOUNT = Decimal("4321.98")
# The planner's first contact under a profile that asks for it (dunning/notice.py).
VALIDATION_NOTICE = "validation_notice"


@dataclass(frozen=True)
class ProfilePrivacy:
    name: str
    mode: str
    # The channels the profile sends the validation notice by (() for none).
    notice_channels: tuple[str, ...]


def profile_privacy(profiles_dir: Path | None, report: Report) -> list[ProfilePrivacy]:
    """Each profile's first-line mode (a profile that does not load is
    reported by compliance/template_config.py already)."""
    from dunning.compliance import ProfileError
    from loaders.config_files import load_profile

    found = []
    for _, profile in _each_file(profiles_dir, "profiles", "profile-error", load_profile, (ProfileError,), lambda *a: None):
        notices = profile.notices
        channels = tuple(notices.validation_notice_channels) if notices.validation_notice_within_days is not None else ()
        found.append(ProfilePrivacy(profile.name, profile.privacy.first_line, channels))
    return found


def check_message_privacy(
    templates_dir: Path, rules: Rules, renderer: TemplateRenderer, present: list[str],
    profiles_dir: Path | None, report: Report, privacy_path: Path = DEFAULT_PRIVACY_RULES,
) -> None:
    try:
        privacy = load_privacy_rules(privacy_path)
    except PrivacyRulesError as error:
        raise RulesError(str(error)) from None
    profiles = [p for p in profile_privacy(profiles_dir, report) if p.mode != FULL]
    for profile in profiles:
        if profile.mode not in privacy.modes:
            report(privacy_path, 1, "privacy-mode-missing", f"profile {profile.name}'s first_line {profile.mode!r} has no [modes] entry")
    for language, template, form in sorted(renderer.names()):
        if language not in present or language not in rules.languages:
            continue
        path = templates_dir / language / f"{template}.{form}{SUFFIX}"
        if form in privacy.forms:
            _check_first_line(path, language, template, form, rules, privacy, renderer, profiles, report)
        if form in privacy.disclosure.forms and template not in privacy.disclosure.exempt_templates:
            _check_disclosure(path, language, template, form, rules, privacy, renderer, report)


def _renders(renderer: TemplateRenderer, language: str, template: str, form: str, context: dict[str, Any]) -> str | None:
    """The rendered form; None when it does not render (the main lint reports that)."""
    try:
        text = renderer.render_form(language, template, form, context)
    except Exception:  # noqa: BLE001 - reported as render-error / syntax-error by the main checks
        return None
    return html.unescape(text) if form.endswith("html") else text


def _contexts(rules: Rules, language: str, debt_collector: bool) -> list[dict[str, Any]]:
    return [c | {"amount": LINT_AMOUNT, "debt_collector": debt_collector} for c in sample_contexts(rules, language)]


def _check_first_line(
    path: Path, language: str, template: str, form: str, rules: Rules, privacy: PrivacyRules,
    renderer: TemplateRenderer, profiles: list[ProfilePrivacy], report: Report,
) -> None:
    for debt_collector in (False, True):
        for context in _contexts(rules, language, debt_collector):
            text = _renders(renderer, language, template, form, context)
            if text is None:
                return
            line = first_line(text)
            for profile in profiles:
                if profile.mode not in privacy.modes:
                    continue
                if template == VALIDATION_NOTICE and form not in profile.notice_channels:
                    continue  # never sent on this channel under this profile
                for reason in violations(line, profile.mode, privacy, amount=LINT_AMOUNT, currency=context["currency"]):
                    report(
                        path, 1, "first-line-privacy",
                        f"the first line {reason}, which profile {profile.name} forbids ([privacy] first_line = "
                        f"{profile.mode}); move it to a later line",
                    )


def _check_disclosure(
    path: Path, language: str, template: str, form: str, rules: Rules, privacy: PrivacyRules,
    renderer: TemplateRenderer, report: Report,
) -> None:
    wanted = privacy.disclosure.by_language.get(language)
    if not wanted:
        return
    needle = wanted.casefold()
    for context in _contexts(rules, language, True):
        text = _renders(renderer, language, template, form, context)
        if text is None:
            return
        if needle not in text.casefold():
            report(
                path, 1, "missing-debt-collector-disclosure",
                f"missing {privacy.disclosure.description} (\"{wanted}\") in the {form} when debt_collector is true "
                "(add it under {% if debt_collector %})",
            )
            return
        misplaced = disclosure_misplaced(rules, text, needle, form, privacy.forms, language, context)
        if misplaced == "first_line":
            report(path, 1, "misplaced-debt-collector-disclosure",
                   f"the disclosure must not be on the first line of a {form} (it names the debt on the lock screen)")
        elif misplaced == "before_identity_check":
            report(path, 1, "misplaced-debt-collector-disclosure",
                   "in a voice script the disclosure comes after the identity check (whoever else answers hangs up first)")
    for context in _contexts(rules, language, False):
        text = _renders(renderer, language, template, form, context)
        if text is not None and needle in text.casefold():
            report(
                path, 1, "unconditional-debt-collector-disclosure",
                f"the {form} says \"{wanted}\" when debt_collector is false: put it under {{% if debt_collector %}}",
            )
            return
