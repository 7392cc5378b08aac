"""Inbound SMS keywords, as data: config/inbound_keywords.toml, read and
checked (`load_keywords`), and what a message asks for (`Keywords.match`).

A message matches a keyword when the whole message, trimmed, is the keyword,
or when its first word is. Both are compared after NFKC (a full-width ＳＴＯＰ
is STOP), case folding (Latin words match in any case; Chinese has none) and
stripping the punctuation around them ("Stop." and "退订！" match), so what
a phone's keyboard adds does not turn an opt-out into a task.
"""

from __future__ import annotations

import re
import string
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ACTIONS", "NO_KEYWORDS", "REPLIES", "InboundConfigError", "Keywords", "Match", "keywords_path", "load_keywords",
    "normalise",
]

# What a keyword may ask for (services/inbound.py does each).
ACTIONS = ("stop", "help", "pay", "dispute", "agent")
# The replies every language needs (see the file's header).
REPLIES = ("help", "help_without_contact", "pay", "dispute", "dispute_which_loan", "agent")
PLACEHOLDERS = frozenset({"lender_name", "lender_contact"})
WORD_MAX_CHARS = 32
REPLY_MAX_CHARS = 670  # ten UCS-2 segments: a Chinese reply longer than this is several messages
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")
class InboundConfigError(ValueError):
    """config/inbound_keywords.toml is not what it must be; the message names the file and the key."""


def normalise(text: str) -> str:
    """A word or message as it is compared: NFKC, case-folded, without the
    punctuation and spaces around it, inner spaces made one."""
    words = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    start, end = 0, len(words)
    while start < end and _around(words[start]):
        start += 1
    while end > start and _around(words[end - 1]):
        end -= 1
    return words[start:end]


def _around(char: str) -> bool:
    """Punctuation or a symbol a keyboard puts around a word, ASCII and CJK alike (。！？…)."""
    return char.isspace() or unicodedata.category(char)[0] in "PS"


@dataclass(frozen=True)
class Match:
    action: str
    language: str


@dataclass(frozen=True)
class Keywords:
    """The keywords (normalised word -> the (language, action) pairs that
    name it, in file order) and the replies (language -> reply -> text)."""

    words: Mapping[str, tuple[tuple[str, str], ...]]
    replies: Mapping[str, Mapping[str, str]]

    def match(self, text: str, language: str | None = None) -> Match | None:
        """What the message asks for, or None. A word several languages share
        takes `language` (the borrower's) when it is one of them."""
        whole = normalise(text)
        first = normalise(whole.split()[0]) if whole.split() else ""
        for candidate in (whole, first):
            named = self.words.get(candidate) if candidate else None
            if named:
                chosen = next((pair for pair in named if pair[0] == language), named[0])
                return Match(action=chosen[1], language=chosen[0])
        return None

    def reply(self, language: str, name: str, lender_name: str, lender_contact: str) -> str:
        """A reply in `language` with the lender's name and contact filled in."""
        if name == "help" and not lender_contact.strip():
            name = "help_without_contact"
        text = self.replies[language][name]
        return text.format_map({"lender_name": lender_name, "lender_contact": lender_contact.strip()})


# No keywords: every message is unrecognised (a task for an agent). What the
# gateway uses while the file cannot be read, so no message is lost.
NO_KEYWORDS = Keywords({}, {})


def keywords_path(config_dir: Path) -> Path:
    return Path(config_dir) / "inbound_keywords.toml"


def load_keywords(path: Path) -> Keywords:
    """config/inbound_keywords.toml, checked: each language names every action
    with at least one word and has every reply; a word names one action
    (it may be in several languages for that action); replies use only
    {lender_name} and {lender_contact}. InboundConfigError names the file
    and the key."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise InboundConfigError(f"{path}: cannot be read ({error.strerror or error})") from None
    except tomllib.TOMLDecodeError as error:
        raise InboundConfigError(f"{path}: not valid TOML: {error}") from None
    extra = sorted(set(data) - {"keywords", "replies"})
    if extra:
        raise InboundConfigError(f"{path}: {extra[0]}: not a table of this file (keywords, replies)")
    keywords, replies = data.get("keywords"), data.get("replies")
    if not isinstance(keywords, dict) or not keywords:
        raise InboundConfigError(f"{path}: keywords: a table per language is required")
    words: dict[str, list[tuple[str, str]]] = {}
    for language, table in keywords.items():
        _words_of(path, language, table, words)
    if not isinstance(replies, dict):
        raise InboundConfigError(f"{path}: replies: a table per language is required")
    for language in replies:
        if language not in keywords:
            raise InboundConfigError(f"{path}: replies.{language}: no keywords.{language} (a reply answers a keyword)")
    texts = {language: _replies_of(path, language, replies.get(language)) for language in keywords}
    return Keywords({word: tuple(named) for word, named in words.items()}, texts)


def _words_of(path: Path, language: str, table: Any, words: dict[str, list[tuple[str, str]]]) -> None:
    where = f"{path}: keywords.{language}"
    if not _LANGUAGE.match(language):
        raise InboundConfigError(f"{where}: not a language code (en, zh_CN, zh_TW, ...)")
    if not isinstance(table, dict):
        raise InboundConfigError(f"{where}: must be a table of actions")
    unknown = sorted(set(table) - set(ACTIONS))
    if unknown:
        raise InboundConfigError(f"{where}.{unknown[0]}: not an action (one of {', '.join(ACTIONS)})")
    for action in ACTIONS:
        listed = table.get(action)
        if not isinstance(listed, list) or not listed:
            raise InboundConfigError(f"{where}.{action}: a list of at least one word is required")
        for n, word in enumerate(listed):
            key = normalise(word) if isinstance(word, str) else ""
            if not key or len(word) > WORD_MAX_CHARS or " " in key:
                raise InboundConfigError(f"{where}.{action}[{n}]: a word is 1 to {WORD_MAX_CHARS} characters, no spaces")
            named = words.setdefault(key, [])
            other = next((a for _, a in named if a != action), None)
            if other is not None:
                raise InboundConfigError(f"{where}.{action}[{n}]: {word!r} already names {other}; a word names one action")
            if (language, action) not in named:
                named.append((language, action))


def _replies_of(path: Path, language: str, table: Any) -> dict[str, str]:
    where = f"{path}: replies.{language}"
    if not isinstance(table, dict):
        raise InboundConfigError(f"{where}: a table of replies is required (one for each of {', '.join(REPLIES)})")
    unknown = sorted(set(table) - set(REPLIES))
    if unknown:
        raise InboundConfigError(f"{where}.{unknown[0]}: not a reply (one of {', '.join(REPLIES)})")
    for name in REPLIES:
        text = table.get(name)
        if not isinstance(text, str) or not text.strip() or len(text) > REPLY_MAX_CHARS:
            raise InboundConfigError(f"{where}.{name}: a text of 1 to {REPLY_MAX_CHARS} characters is required")
        try:
            fields = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
        except ValueError as error:
            raise InboundConfigError(f"{where}.{name}: {error} (write a literal brace as {{{{ or }}}})") from None
        if fields - PLACEHOLDERS:
            raise InboundConfigError(f"{where}.{name}: {{{sorted(fields - PLACEHOLDERS)[0]}}} is not one of "
                                     f"{', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}")
    return dict(table)
