"""The disclosures a time-barred debt's messages carry (issue 18, item 2):
config/compliance/limitation_disclosures.toml, one entry per key a
compliance profile's [limitations] names.

An entry holds the jurisdiction's required text as written (`en`, and a
translation per template language where the lender has one: without it the
English text is used), its source, and `placeholder = true` where no
required text could be read and the lender must fill it: a message that
would carry a placeholder is never sent (the send activity ends its outbox
row unsent, naming the key), so no borrower reads a bracketed note. Two
fill-ins, where the law's text has brackets: `{collector}` (the sender's
name, as every message names it) and `{continue_to}` ("continue to " once
the account was reported to a credit bureau, else nothing: Cal. Civ. Code
1788.14(d)(1)'s "[continue to]").

The template lint checks that every key a profile names is here with an
`en` text (compliance/template_lint_limitation.py).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

FILE_NAME = "limitation_disclosures.toml"
FILL_INS = ("collector", "continue_to")
_FILL_IN = re.compile(r"\{([a-z_]+)\}")


class DisclosureError(ValueError):
    """The disclosures file cannot be used; names the key."""


class DisclosureMissing(LookupError):
    """No text may be sent for a key: unknown, or a placeholder to fill."""


@dataclass(frozen=True)
class Disclosure:
    key: str
    source: str
    texts: Mapping[str, str]  # language -> text ("en" always)
    placeholder: bool = False


def disclosures_path(config_dir: Path) -> Path:
    return Path(config_dir) / "compliance" / FILE_NAME


def load_disclosures(path: Path) -> dict[str, Disclosure]:
    path = Path(path)
    return dict(_load(path, path.stat().st_mtime_ns if path.exists() else 0))


@lru_cache(maxsize=8)
def _load(path: Path, _mtime: int) -> tuple[tuple[str, Disclosure], ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DisclosureError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as error:
        raise DisclosureError(f"{path}: {error}") from None
    entries = data.get("disclosures")
    if not isinstance(entries, dict) or set(data) - {"disclosures"}:
        raise DisclosureError(f"{path}: needs [disclosures.<key>] tables and nothing else")
    found = []
    for key, entry in entries.items():
        where = f"{path}: disclosures.{key}"
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", key) or not isinstance(entry, dict):
            raise DisclosureError(f"{where}: a key of lowercase letters, digits and _, holding a table")
        texts = {k: v for k, v in entry.items() if k not in ("source", "placeholder")}
        if not isinstance(texts.get("en"), str) or not all(isinstance(v, str) and v.strip() for v in texts.values()):
            raise DisclosureError(f"{where}: needs a non-empty `en` text (and a text per other language it has)")
        for language, text in texts.items():
            unknown = set(_FILL_IN.findall(text)) - set(FILL_INS)
            if unknown:
                raise DisclosureError(f"{where}.{language}: unknown fill-ins {sorted(unknown)} (known: {list(FILL_INS)})")
        placeholder = entry.get("placeholder", False)
        if not isinstance(placeholder, bool):
            raise DisclosureError(f"{where}.placeholder: must be true or false")
        found.append((key, Disclosure(key, str(entry.get("source", "")), texts, placeholder)))
    return tuple(found)


def disclosure_text(
    config_dir: Path, key: str, language: str, *, collector: str, reported: bool,
) -> str:
    """The text a message in `language` carries for `key`; DisclosureMissing
    when there is none to send (an unknown key, a placeholder)."""
    if not key:
        return ""
    entry = load_disclosures(disclosures_path(config_dir)).get(key)
    if entry is None:
        raise DisclosureMissing(f"limitation disclosure {key!r} is not in {FILE_NAME}")
    if entry.placeholder:
        raise DisclosureMissing(
            f"limitation disclosure {key!r} is a placeholder the lender must fill ({FILE_NAME}): "
            "a time-barred message without its required disclosure is not sent"
        )
    text = entry.texts.get((language or "").replace("-", "_")) or entry.texts["en"]
    values = {"collector": collector, "continue_to": "continue to " if reported else ""}
    return _FILL_IN.sub(lambda m: values[m.group(1)], text).strip()
