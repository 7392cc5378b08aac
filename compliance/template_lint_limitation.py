"""The template lint's time-barred debt checks (issue 18, item 2; rules:
`[time_barred]` in config/compliance/template_rules.toml).

12 CFR 1006.26(b): "A debt collector must not bring or threaten to bring a
legal action against a consumer to collect a time-barred debt." A
time-barred debt's messages are the templates rendered with `time_barred`
true and the disclosure its jurisdiction requires as `limitation_disclosure`
(activities/outbox.py). Every template form is rendered that way, with the
disclosure replaced by the rules' `disclosure_sample`, and the other way:

- `time-barred-threat`: the time-barred rendering of any form (an e-mail
  subject too) holds a phrase of `[time_barred]`: what may lawfully be said
  of a debt that may still be sued on ("may be referred for legal
  recovery") is a threat of suit once it is time-barred (the `[[banned]]`
  phrases, never lawful, are looked for in every template file already);
- `missing-limitation-disclosure`: the time-barred rendering of one of the
  rules' forms (SMS, push, e-mail bodies, voice scripts, letters) lacks the
  disclosure; `unconditional-limitation-disclosure`: the other rendering has
  it (it belongs under `{% if time_barred %}`);
- `misplaced-limitation-disclosure`: on the first line of an SMS or push
  (which a lock screen shows: it names the debt), or in a voice script
  before the identity check (whoever else answers hangs up first);
- `unknown-limitation-disclosure` / `limitation-disclosures-error`: a
  disclosure a compliance profile's [limitations] names is not in
  config/compliance/limitation_disclosures.toml, or that file cannot be used.

The disclosures' own texts are the law's words ("we will not sue you for
it"), so they are not held to the banned phrases; the placeholders in that
file are the lender's to fill and stop the messages that would carry them
(activities/limitation_disclosures.py), not the lint.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from activities.limitation_disclosures import DisclosureError, load_disclosures
from activities.rendering import IVR_FORM, SUFFIX, TemplateRenderer
from compliance.template_config import Report, _each_file, line_of
from compliance.template_rules import Rules, blank, disclosure_misplaced, may_match, sample_contexts

PHONE_FORMS = ("sms", "push")


def check_time_barred(
    templates_dir: Path, rules: Rules, renderer: TemplateRenderer, present: list[str], report: Report,
) -> None:
    barred = rules.time_barred
    if barred is None:
        return
    for language, template, form in sorted(renderer.names()):
        if language not in present or language not in rules.languages or form == IVR_FORM:
            continue
        path = templates_dir / language / f"{template}.{form}{SUFFIX}"
        source = path.read_text(encoding="utf-8")
        for context in sample_contexts(rules, language):
            text = _renders(renderer, language, template, form, context | {
                "time_barred": True, "limitation_disclosure": barred.disclosure_sample})
            if text is None:
                return  # the main lint reports what does not render
            _check_threats(path, source, text, rules, report)
            if form in barred.forms:
                _check_disclosure(path, language, form, text, context, rules, report)
                ordinary = _renders(renderer, language, template, form, context | {
                    "time_barred": False, "limitation_disclosure": barred.disclosure_sample})
                if ordinary is not None and barred.disclosure_sample.casefold() in ordinary.casefold():
                    report(path, line_of(source, "limitation_disclosure"), "unconditional-limitation-disclosure",
                           f"the {form} carries the limitation disclosure when time_barred is false: put it under "
                           "{% if time_barred %}")


def _renders(renderer: TemplateRenderer, language: str, template: str, form: str, context: dict[str, Any]) -> str | None:
    try:
        text = renderer.render_form(language, template, form, context)
    except Exception:  # noqa: BLE001 - reported by the main checks
        return None
    return html.unescape(text) if form.endswith("html") else text


def _check_threats(path: Path, source: str, text: str, rules: Rules, report: Report) -> None:
    visible = blank(text, rules.ignore)
    banned = rules.time_barred.banned
    if not may_match(banned.phrases, visible):
        return
    # A phrase banned everywhere is reported as `banned-phrase` from the file itself: not twice.
    everywhere = [m.span() for b in rules.banned for _, _, p in b.phrases for m in p.finditer(visible)]
    for language, phrase, pattern in banned.phrases:
        for match in pattern.finditer(visible):
            if any(start < match.end() and match.start() < end for start, end in everywhere):
                continue
            report(
                path, line_of(source, match.group(0)), "time-barred-threat",
                f"\"{match.group(0)}\" ({language} \"{phrase}\") in the time-barred rendering: {banned.reason}; "
                "say it under {% if not time_barred %}",
            )


def _check_disclosure(
    path: Path, language: str, form: str, text: str, context: dict[str, Any], rules: Rules, report: Report,
) -> None:
    needle = rules.time_barred.disclosure_sample.casefold()
    if needle not in text.casefold():
        report(path, 1, "missing-limitation-disclosure",
               f"no limitation disclosure in the time-barred {form} (add {{{{ limitation_disclosure }}}} under "
               "{% if time_barred %})")
        return
    misplaced = disclosure_misplaced(rules, text, needle, form, PHONE_FORMS, language, context)
    if misplaced == "first_line":
        report(path, 1, "misplaced-limitation-disclosure",
               f"the limitation disclosure must not be on the first line of a {form} (it names the debt on the lock screen)")
    elif misplaced == "before_identity_check":
        report(path, 1, "misplaced-limitation-disclosure",
               "in a voice script the limitation disclosure comes after the identity check")


def check_disclosure_keys(profiles_dir: Path | None, disclosures_path: Path, report: Report) -> None:
    """Every disclosure a profile's [limitations] names is in the disclosures file."""
    from dunning.compliance import ProfileError
    from loaders.config_files import load_profile

    try:
        known = load_disclosures(disclosures_path)
    except DisclosureError as error:
        report(disclosures_path, 1, "limitation-disclosures-error", str(error))
        return
    for path, profile in _each_file(profiles_dir, "profiles", "profile-error", load_profile, (ProfileError,),
                                    lambda *a: None):
        for jurisdiction, rule in profile.limitations.items():
            for key in (rule.disclosure, rule.disclosure_after_obsolescence):
                if key and key not in known:
                    report(path, line_of(path.read_text(encoding="utf-8"), key), "unknown-limitation-disclosure",
                           f"limitations.{jurisdiction} names disclosure {key!r}, which "
                           f"{disclosures_path.name} does not have")
