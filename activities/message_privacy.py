"""Message privacy: what the first line of an SMS or push may say, and the
debt collector's disclosure (rules: config/compliance/message_privacy.toml).

The first line of an SMS or a push (up to the first newline) is what a lock
screen, a watch or a shared phone shows before the message is opened. A
profile's [privacy] first_line (dunning/compliance.py, `Privacy`) says what
it may name:

    full                        anything
    limited_content             no amount and no word that names a debt (us:
                                the style of 12 CFR 1006.2(j))
    no_amount_before_identity   no amount and no "overdue" word (cn)

`first_line_violation` answers for one rendered text; the send activity
(activities/outbox.py, `_draft`) asks it before a message is written for the
provider, and the template lint (compliance/template_lint_privacy.py) asks it
of every template under every profile. What it returns names the rule and the
listed word, never the text: it goes into the outbox row's error, the
outcome and workflow history, and the first line holds the borrower's name.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from babel.numbers import format_decimal, get_currency_precision

from activities.rendering import LOCALES, babel_locale, format_money

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RULES: Final = ROOT / "config" / "compliance" / "message_privacy.toml"
FULL: Final = "full"
AMOUNT: Final = "amount"  # the part of a mode's `forbid` that is not a word list


class PrivacyRulesError(ValueError):
    """message_privacy.toml cannot be used; names the key."""


class MessagePrivacyViolation(ValueError):
    """A rendered message whose first line the contact's privacy mode forbids."""


@dataclass(frozen=True)
class WordList:
    name: str
    description: str
    # (language, listed word, compiled pattern)
    words: tuple[tuple[str, str, re.Pattern[str]], ...]


@dataclass(frozen=True)
class Mode:
    name: str
    description: str
    forbid: tuple[str, ...]  # AMOUNT and word list names


@dataclass(frozen=True)
class Disclosure:
    description: str
    forms: tuple[str, ...]
    exempt_templates: tuple[str, ...]
    by_language: Mapping[str, str]


@dataclass(frozen=True)
class PrivacyRules:
    languages: tuple[str, ...]
    forms: tuple[str, ...]
    words: Mapping[str, WordList]
    amount_patterns: tuple[re.Pattern[str], ...]
    modes: Mapping[str, Mode]
    disclosure: Disclosure


# ---------------------------------------------------------------------- reading


def load_privacy_rules(path: Path | str = DEFAULT_RULES) -> PrivacyRules:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PrivacyRulesError(f"{path}: no such rules file") from None
    except tomllib.TOMLDecodeError as error:
        raise PrivacyRulesError(f"{path}: {error}") from None
    try:
        return _parse(data)
    except PrivacyRulesError as error:
        raise PrivacyRulesError(f"{path}: {error}") from None


@lru_cache(maxsize=8)
def _cached(path: str, mtime_ns: int) -> PrivacyRules:
    return load_privacy_rules(path)


def rules_for(config_dir: Path | None = None) -> PrivacyRules:
    """The rules under `config_dir`/compliance (a deployment's own), else the
    project's; read once per file version."""
    path = DEFAULT_RULES
    if config_dir is not None and (Path(config_dir) / "compliance" / DEFAULT_RULES.name).is_file():
        path = Path(config_dir) / "compliance" / DEFAULT_RULES.name
    return _cached(str(path), path.stat().st_mtime_ns)


def _strings(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise PrivacyRulesError(f"{key} must be a list of non-empty strings")
    return tuple(value)


def _word_pattern(word: str, whole_word: bool) -> re.Pattern[str]:
    """A listed word: words separated by spaces or hyphens, a trailing "*" a
    prefix; whole words in a whole-word language. Case-insensitive."""
    prefix = word.endswith("*")
    parts = re.split(r"[\s\-]+", word.rstrip("*").strip())
    body = r"[\s\-]+".join(re.escape(p) for p in parts) if whole_word else re.escape(word.rstrip("*"))
    if whole_word:
        body = r"(?<![\w])" + body + (r"[\w\-]*" if prefix else r"(?![\w])")
    return re.compile(body, re.IGNORECASE)


def _parse(data: Mapping[str, Any]) -> PrivacyRules:
    known = {"languages", "whole_word_languages", "forms", "words", "amount_patterns", "modes", "disclosure"}
    extra = set(data) - known
    if extra:
        raise PrivacyRulesError(f"unknown keys {sorted(extra)}")
    languages = _strings(data.get("languages"), "languages")
    whole_word = set(_strings(data.get("whole_word_languages") or ["-"], "whole_word_languages"))
    forms = _strings(data.get("forms"), "forms")

    words: dict[str, WordList] = {}
    for name, entry in (data.get("words") or {}).items():
        if not isinstance(entry, dict):
            raise PrivacyRulesError(f"words.{name} must be a table")
        missing = set(languages) - set(entry)
        if missing:
            raise PrivacyRulesError(f"words.{name} has no list for {sorted(missing)}")
        unknown = set(entry) - set(languages) - {"description"}
        if unknown:
            raise PrivacyRulesError(f"words.{name}: unknown keys {sorted(unknown)}")
        compiled = tuple(
            (language, word, _word_pattern(word, language in whole_word))
            for language in languages
            for word in _strings(entry[language], f"words.{name}.{language}")
        )
        words[name] = WordList(name, str(entry.get("description", name)), compiled)
    if AMOUNT in words:
        raise PrivacyRulesError(f"words.{AMOUNT}: the name is the amount check's")

    patterns = []
    for index, text in enumerate(_strings(data.get("amount_patterns"), "amount_patterns")):
        try:
            pattern = re.compile(text, re.IGNORECASE)
        except re.error as error:
            raise PrivacyRulesError(f"amount_patterns[{index}]: {text!r} is not a regular expression ({error})") from None
        if pattern.search(""):
            raise PrivacyRulesError(f"amount_patterns[{index}]: {text!r} matches an empty text")
        patterns.append(pattern)

    modes: dict[str, Mode] = {}
    for name, entry in (data.get("modes") or {}).items():
        if not isinstance(entry, dict) or "forbid" not in entry:
            raise PrivacyRulesError(f"modes.{name} needs `forbid`")
        forbid = tuple(entry["forbid"]) if entry["forbid"] == [] else _strings(entry["forbid"], f"modes.{name}.forbid")
        for part in forbid:
            if part != AMOUNT and part not in words:
                raise PrivacyRulesError(f"modes.{name}.forbid: {part!r} is neither {AMOUNT!r} nor a [words] list")
        modes[name] = Mode(name, str(entry.get("description", name)), forbid)
    if FULL not in modes or modes[FULL].forbid:
        raise PrivacyRulesError(f"modes.{FULL} must exist and forbid nothing")

    entry = data.get("disclosure")
    if not isinstance(entry, dict):
        raise PrivacyRulesError("no [disclosure]")
    texts = {language: entry.get(language) for language in languages}
    for language, text in texts.items():
        if not isinstance(text, str) or not text.strip():
            raise PrivacyRulesError(f"disclosure.{language} must be a non-empty string")
    disclosure = Disclosure(
        description=str(entry.get("description", "the debt collector disclosure")),
        forms=_strings(entry.get("forms"), "disclosure.forms"),
        exempt_templates=_strings(entry["exempt_templates"], "disclosure.exempt_templates") if entry.get("exempt_templates") else (),
        by_language=texts,
    )
    return PrivacyRules(languages, forms, words, tuple(patterns), modes, disclosure)


# ---------------------------------------------------------------------- checking


def first_line(text: str) -> str:
    """What a lock screen shows first: the text up to its first newline."""
    return text.strip().split("\n", 1)[0].strip()


def amount_forms(amount: Any, currency: str | None, languages: Iterable[str] = LOCALES) -> set[str]:
    """The ways a message may write `amount`: in each language's locale with
    its currency, and as a bare number with and without thousands separators."""
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except (InvalidOperation, ValueError):
        return set()
    if not value.is_finite():
        return set()
    forms: set[str] = set()
    code = (currency or "").strip().upper()
    digits = get_currency_precision(code) if len(code) == 3 else 2
    quantized = value.quantize(Decimal(1).scaleb(-digits)) if digits else value.quantize(Decimal(1))
    for language in languages:
        locale = babel_locale(language)
        if code:
            try:
                forms.add(format_money(value, code, locale))
            except (ValueError, TypeError):
                pass
        forms.add(format_decimal(quantized, format="#,##0" + ("." + "0" * digits if digits else ""), locale=locale))
    forms.add(f"{quantized:f}")
    if quantized == quantized.to_integral_value():
        # "1,200" for 1200.00; not a bare "1200", which a loan number may hold.
        forms.add(f"{quantized.to_integral_value():,}")
    return {f for f in forms if f.strip()}


def violations(
    line: str, mode: str, rules: PrivacyRules, *, amount: Any = None, currency: str | None = None
) -> list[str]:
    """Why `line` may not be a first line under `mode` ([] when it may): the
    rule and the listed word, never the line itself."""
    if mode not in rules.modes:
        raise MessagePrivacyViolation(f"unknown privacy mode {mode!r} (known: {', '.join(sorted(rules.modes))})")
    found: list[str] = []
    folded = line.casefold()
    for part in rules.modes[mode].forbid:
        if part == AMOUNT:
            exact = amount is not None and any(f.casefold() in folded for f in amount_forms(amount, currency))
            if exact or any(p.search(line) for p in rules.amount_patterns):
                found.append("states an amount")
            continue
        listed = rules.words[part]
        hits = sorted({f'"{word}"' for _, word, pattern in listed.words if pattern.search(line)})
        if hits:
            found.append(f"{listed.description} ({', '.join(hits[:3])})")
    return found


def first_line_violation(
    text: str, mode: str, rules: PrivacyRules, *, amount: Any = None, currency: str | None = None
) -> str | None:
    """None when the first line of `text` obeys `mode`; else one line saying
    which rule it breaks (fit for an outbox error and workflow history)."""
    if mode == FULL:
        return None
    found = violations(first_line(text), mode, rules, amount=amount, currency=currency)
    if not found:
        return None
    return f"message privacy ({mode}): the first line {'; '.join(found)}"


def blocked_reason(
    channel: str, mode: str, text: str, *, amount: Any = None, currency: str | None = None,
    config_dir: Path | None = None,
) -> str | None:
    """The send-time check (activities/outbox.py, `_draft`): None when a
    rendered message may go; else why its first line may not (an SMS or push
    under a mode other than `full`). Rules that cannot be read raise
    PrivacyRulesError: nothing is sent unchecked."""
    if mode == FULL or not mode:
        return None
    rules = rules_for(config_dir)
    if channel not in rules.forms:
        return None
    return first_line_violation(text, mode, rules, amount=amount, currency=currency)
