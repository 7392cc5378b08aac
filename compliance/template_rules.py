"""The template lint's rules (config/compliance/template_rules.toml), read
and checked: a rules file that cannot be used is a RulesError naming the
key, before any template is read.

What they hold: the languages, the banned phrases (compiled), the parts a
rendered form must or must not contain (`[parts]`, `[forms]`), the opt-out
part of each channel, the templates every language must have, and the sample
context the forms are rendered with.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from activities.rendering import CHANNEL_FORMS, CONTEXT_KEYS, FORMS, babel_locale, format_day, format_money

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class RulesError(ValueError):
    """template_rules.toml cannot be used; names the key."""


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
    # Templates that must not ask for payment (issue 18, item 1: the one
    # notice after a request to cease communication): the pay link is not
    # required in them, and forbidden.
    no_pay_link_templates: tuple[str, ...] = ()
    # Time-barred debt (issue 18, item 2; compliance/template_lint_limitation.py):
    # the phrases a time-barred rendering must not hold, the forms that carry
    # the disclosure, and what stands for the disclosure when rendering.
    time_barred: TimeBarredRules | None = None


@dataclass(frozen=True)
class TimeBarredRules:
    banned: Banned
    forms: tuple[str, ...]
    disclosure_sample: str


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


# ---------------------------------------------------------------------- parsing


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise RulesError(f"{key} must be a list of non-empty strings")
    return tuple(value)


def _optional_strings(data: Mapping[str, Any], name: str, key: str | None = None) -> tuple[str, ...]:
    """A list of strings that may be left out (or empty)."""
    return _strings(data[name], key or name) if data.get(name) else ()


REGEX_PREFIX = "re:"


def _phrase_pattern(phrase: str, whole_word: bool) -> re.Pattern[str]:
    """A banned phrase's pattern: words (a trailing "*" is a prefix), or a
    regular expression when it starts with "re:" (Python syntax, to match a
    phrase with its inflections and word order), whole words in a
    whole-word language either way. Case-insensitive."""
    if phrase.startswith(REGEX_PREFIX):
        body = f"(?:{phrase[len(REGEX_PREFIX):].strip()})"
        if whole_word:
            body = r"(?<![\w])" + body + r"(?![\w])"
        return re.compile(body, re.IGNORECASE)
    prefix = phrase.endswith("*")
    words = phrase.rstrip("*").strip().split()
    body = r"[\s\-]+".join(re.escape(w) for w in words) if whole_word else re.escape(phrase.rstrip("*"))
    if whole_word:
        body = r"(?<![\w])" + body + (r"[\w\-]*" if prefix else r"(?![\w])")
    return re.compile(body, re.IGNORECASE)


def _check_placeholders(text: str, key: str) -> None:
    unknown = set(PLACEHOLDER.findall(text)) - CONTEXT_KEYS
    if unknown:
        raise RulesError(f"{key} names {sorted(unknown)}, which are not template variables")


def _parse_rules(data: Mapping[str, Any]) -> Rules:
    known = {
        "languages", "required_templates", "whole_word_languages", "ignore_patterns",
        "banned", "parts", "forms", "opt_out_parts", "sample", "channel_templates", "no_pay_link_templates",
        "time_barred",
    }
    extra = set(data) - known
    if extra:
        raise RulesError(f"unknown keys {sorted(extra)}")
    languages = _strings(data.get("languages"), "languages")
    required = _optional_strings(data, "required_templates")
    for name in required:
        if not TEMPLATE_NAME.match(name):
            raise RulesError(f"required_templates: {name!r} is not a template name")
    whole_word = set(_optional_strings(data, "whole_word_languages"))
    try:
        ignore = tuple(re.compile(p, re.DOTALL) for p in _optional_strings(data, "ignore_patterns"))
    except re.error as error:
        raise RulesError(f"ignore_patterns: {error}") from None
    banned = _parse_banned(data.get("banned") or [], languages, whole_word)
    parts = _parse_parts(data.get("parts") or {}, languages)
    require, forbid = _parse_forms(data.get("forms") or {}, parts)
    opt_out_parts = _parse_opt_out_parts(data.get("opt_out_parts") or {}, parts)
    sample, by_language = _parse_sample(data.get("sample") or {}, languages)
    channel_templates = _parse_channel_templates(data.get("channel_templates") or {})
    no_pay_link = _optional_strings(data, "no_pay_link_templates")
    for name in no_pay_link:
        if not TEMPLATE_NAME.match(name):
            raise RulesError(f"no_pay_link_templates: {name!r} is not a template name")
    if no_pay_link and "pay_link" not in parts:
        raise RulesError("no_pay_link_templates needs a `pay_link` part")
    time_barred = _parse_time_barred(data["time_barred"], languages, whole_word) if "time_barred" in data else None
    return Rules(
        languages=languages, required_templates=required, banned=banned, ignore=ignore, parts=parts,
        require=require, forbid=forbid, opt_out_parts=opt_out_parts, sample=sample,
        sample_by_language=by_language, channel_templates=channel_templates, no_pay_link_templates=no_pay_link,
        time_barred=time_barred,
    )


def _parse_time_barred(entry: Any, languages: tuple[str, ...], whole_word: set[str]) -> TimeBarredRules:
    if not isinstance(entry, dict):
        raise RulesError("time_barred must be a table")
    extra = set(entry) - set(languages) - {"reason", "forms", "disclosure_sample"}
    if extra:
        raise RulesError(f"time_barred: unknown keys {sorted(extra)}")
    forms = _strings(entry.get("forms"), "time_barred.forms")
    unknown = [f for f in forms if f not in FORMS]
    if unknown:
        raise RulesError(f"time_barred.forms: {unknown} not in {list(FORMS)}")
    sample = entry.get("disclosure_sample")
    if not isinstance(sample, str) or not sample.strip():
        raise RulesError("time_barred.disclosure_sample must be a non-empty string")
    phrases = {k: v for k, v in entry.items() if k in languages}
    [banned] = _parse_banned([{"category": "time_barred", "reason": str(entry.get("reason", "")), **phrases}],
                             languages, whole_word)
    return TimeBarredRules(banned, forms, sample)


def _parse_banned(entries: list, languages: tuple[str, ...], whole_word: set[str]) -> tuple[Banned, ...]:
    banned: list[Banned] = []
    for index, entry in enumerate(entries):
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
                try:
                    pattern = _phrase_pattern(phrase, language in whole_word)
                except re.error as error:
                    raise RulesError(f"{key}.{language}: {phrase!r} is not a regular expression ({error})") from None
                if pattern.search(""):
                    raise RulesError(f"{key}.{language}: {phrase!r} matches an empty text")
                phrases.append((language, phrase, pattern))
        banned.append(Banned(entry["category"], str(entry.get("reason", "")), tuple(phrases)))
    if not banned:
        raise RulesError("no [[banned]] phrases")
    return tuple(banned)


def _parse_parts(entries: Mapping[str, Any], languages: tuple[str, ...]) -> dict[str, Part]:
    parts: dict[str, Part] = {}
    for name, entry in entries.items():
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
        before = _optional_strings(entry, "before", f"{key}.before")
        for text in before:
            _check_placeholders(text, f"{key}.before")
        if entry.get("any") is None and set(by_language) != set(languages):
            missing = sorted(set(languages) - set(by_language))
            raise RulesError(f"{key} has no text for {missing} and no `any`")
        parts[name] = Part(name, str(entry.get("description", name)), entry.get("any"), by_language, before)
    return parts


def _parse_forms(entries: Mapping[str, Any], parts: Mapping[str, Part]) -> tuple[dict, dict]:
    """(form -> required part names, form -> forbidden part names)."""
    require: dict[str, tuple[str, ...]] = {}
    forbid: dict[str, tuple[str, ...]] = {}
    for form, entry in entries.items():
        if form not in FORMS:
            raise RulesError(f"forms.{form}: not one of {list(FORMS)}")
        extra = set(entry) - {"require", "forbid"}
        if extra:
            raise RulesError(f"forms.{form}: unknown keys {sorted(extra)}")
        for kind, target in (("require", require), ("forbid", forbid)):
            names = _optional_strings(entry, kind, f"forms.{form}.{kind}")
            for name in names:
                if name not in parts:
                    raise RulesError(f"forms.{form}.{kind}: no part {name!r} under [parts]")
            target[form] = names
    return require, forbid


def _parse_opt_out_parts(entries: Mapping[str, Any], parts: Mapping[str, Part]) -> dict[str, str]:
    opt_out_parts = dict(entries)
    for channel, name in opt_out_parts.items():
        if channel not in CHANNEL_FORMS:
            raise RulesError(f"opt_out_parts.{channel}: not one of {list(CHANNEL_FORMS)}")
        if name not in parts:
            raise RulesError(f"opt_out_parts.{channel}: no part {name!r} under [parts]")
    return opt_out_parts


def _parse_sample(entries: Mapping[str, Any], languages: tuple[str, ...]) -> tuple[dict, dict]:
    """(the sample context, its per-language values)."""
    sample = dict(entries)
    by_language = sample.pop("language", {}) or {}
    for language in languages:
        keys = set(sample) | set(by_language.get(language, {}))
        if keys != CONTEXT_KEYS:
            raise RulesError(
                f"sample (with sample.language.{language}) must give exactly the template variables; "
                f"missing {sorted(CONTEXT_KEYS - keys)}, unknown {sorted(keys - CONTEXT_KEYS)}"
            )
    return sample, by_language


def _parse_channel_templates(entries: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    channel_templates = {}
    for name, channels in entries.items():
        if not TEMPLATE_NAME.match(name):
            raise RulesError(f"channel_templates: {name!r} is not a template name")
        channel_templates[name] = _strings(channels, f"channel_templates.{name}")
        unknown = [c for c in channel_templates[name] if c not in CHANNEL_FORMS]
        if unknown:
            raise RulesError(f"channel_templates.{name}: {unknown} not in {list(CHANNEL_FORMS)}")
    return channel_templates


# ---------------------------------------------------------------------- matching


def banned_matches(rules: Rules, text: str) -> list[tuple[Banned, str, str, re.Match[str]]]:
    """Every banned phrase in `text` (what no reader sees blanked first, see
    `ignore_patterns`): (rule, language of the list, phrase, match), in
    rules order. The lint runs this on every template file; the tests run it
    on the example corpus (tests/lint_corpus)."""
    visible = blank(text, rules.ignore)
    found = []
    for banned in rules.banned:
        if not may_match(banned.phrases, visible):
            continue
        for language, phrase, pattern in banned.phrases:
            found.extend((banned, language, phrase, match) for match in pattern.finditer(visible))
    return found


def may_match(phrases: tuple, text: str) -> bool:
    """Whether any of `phrases` ((language, phrase, pattern), ...) occurs in
    `text`: one search of their alternation, so that a text with none (most
    of them) is not searched once per phrase. The lint renders every
    template in every form, language and variant; this keeps it fast."""
    return _alternation(tuple(pattern for _, _, pattern in phrases)).search(text) is not None


@functools.lru_cache(maxsize=256)
def _alternation(patterns: tuple[re.Pattern[str], ...]) -> re.Pattern[str]:
    # Every phrase pattern is compiled with IGNORECASE alone (_phrase_pattern).
    # A backreference would point at another group once joined: such a list
    # is always searched phrase by phrase (the empty pattern matches anything).
    if any(re.search(r"\\[1-9]|\(\?P=", p.pattern) for p in patterns):
        return re.compile("")
    return re.compile("|".join(f"(?:{p.pattern})" for p in patterns) or r"(?!)", re.IGNORECASE)


def blank(source: str, patterns: tuple[re.Pattern[str], ...]) -> str:
    """Blank what no reader sees, keeping every character's line."""
    for pattern in patterns:
        source = pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), source)
    return source


# ---------------------------------------------------------------------- the sample


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


def with_sample(text: str, language: str, context: Mapping[str, Any]) -> str:
    """A part's text with its `{name}`s replaced by the sample's values, as the language shows them."""
    return PLACEHOLDER.sub(lambda m: _display(context, m.group(1), language), text)


def part_text(part: Part, language: str, context: Mapping[str, Any]) -> str | None:
    template = part.template_for(language)
    return None if template is None else with_sample(template, language, context)


def disclosure_misplaced(
    rules: Rules, text: str, needle: str, form: str, phone_forms, language: str, context: Mapping[str, Any],
) -> str | None:
    """Where a disclosure found in `text` (its casefolded `needle`) may not
    stand: "first_line" on a form a lock screen shows (`phone_forms`: it
    names the debt there), "before_identity_check" in a voice script whose
    identity check is in its place (whoever else answers hangs up first; a
    missing or misplaced check is the main lint's finding). None if neither."""
    folded = text.casefold()
    if form in phone_forms and needle in text.strip().split("\n", 1)[0].casefold():  # message_privacy.first_line
        return "first_line"
    check = rules.parts.get("identity_check")
    if form == "voice" and check is not None:
        said = part_text(check, language, context)
        where = folded.find(said.casefold()) if said else -1
        in_place = where >= 0 and not any(
            0 <= folded.find(with_sample(item, language, context).casefold()) < where for item in check.before
        )
        if in_place and folded.find(needle) < where:
            return "before_identity_check"
    return None


def part_marker(text: str) -> str:
    """What to look for in a template's source for a part: its variable, or its text."""
    names = PLACEHOLDER.findall(text)
    return names[0] if names else text
