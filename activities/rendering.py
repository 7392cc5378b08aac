"""Message templates: config/templates/<language>/<template>.<form>.j2.

A template is named by the policy's contact step (`reminder_friendly`, ...);
each channel renders one or more *forms* of it:

    sms    -> <template>.sms.j2
    push   -> <template>.push.j2
    voice  -> <template>.voice.j2            (a TTS script: never the link)
    email  -> <template>.email.subject.j2 + .email.txt.j2 + .email.html.j2

Files whose template part starts with "_" (e.g. `_layout.email.html.j2`) are
layouts that templates extend; they are not templates of their own.

Templates run in Jinja's sandbox with StrictUndefined, so a template that
names a variable the caller did not pass fails loudly instead of sending a
message with a hole in it. Only `.html.j2` files are autoescaped. The context
is exactly CONTEXT_KEYS.

Language resolution: the exact language directory (`zh_CN`; `zh-CN` is read
as `zh_CN`), else the fallback language (`en`). A channel's forms always come
from one language, so an e-mail never mixes a Chinese subject with an English
body. There is deliberately no prefix matching (`zh_TW` is not `zh_CN`).

One TemplateRenderer is meant to be shared: the Jinja environment compiles
each template once and caches it, and rendering is safe from many threads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateNotFound, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

CHANNELS: Final = ("sms", "push", "email", "voice")
FORMS: Final = ("sms", "push", "email.subject", "email.txt", "email.html", "voice")
CHANNEL_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "sms": ("sms",),
    "push": ("push",),
    "voice": ("voice",),
    "email": ("email.subject", "email.txt", "email.html"),
}
# The variables every template may use, and the only ones.
CONTEXT_KEYS: Final = frozenset(
    {
        "lender_name",
        "borrower_name",
        "amount",
        "currency",
        "due_date",
        "days_past_due",
        "pay_link",
        "loan_id",
        "stage",
    }
)
SUFFIX: Final = ".j2"

_TEMPLATE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:_[A-Za-z0-9]{2,8})?$")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class RenderedMessage:
    subject: str | None  # e-mail only
    text: str  # sms / push / voice body, or the e-mail's plain text
    html: str | None  # e-mail only


class TemplateMissing(LookupError):
    """No file for a template's form, in the language asked for nor the fallback."""


def template_file(language: str, template: str, form: str) -> str:
    """The loader name of one form: 'zh_CN/reminder_friendly.sms.j2'."""
    return f"{language}/{template}.{form}{SUFFIX}"


def _normalise_language(language: str) -> str | None:
    """'zh-CN' -> 'zh_CN'; None for anything that is not a plain language tag."""
    candidate = (language or "").strip().replace("-", "_")
    return candidate if _LANGUAGE.match(candidate) else None


def _single_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _finish(form: str, text: str) -> str:
    if form in ("voice", "email.subject"):
        # TTS reads one flowing script; a subject is one header line, so a
        # newline in a name can never start a new header.
        return _single_line(text)
    if form == "email.txt":
        return text.strip() + "\n"
    if form == "email.html":
        return text.strip() + "\n"
    return text.strip()


class TemplateRenderer:
    def __init__(self, templates_dir: Path, fallback_language: str = "en", *, auto_reload: bool = True):
        self.templates_dir = Path(templates_dir)
        if not self.templates_dir.is_dir():
            raise FileNotFoundError(f"templates directory {self.templates_dir} does not exist")
        fallback = _normalise_language(fallback_language)
        if fallback is None:
            raise ValueError(f"fallback_language {fallback_language!r} is not a language like 'en' or 'zh_CN'")
        self.fallback_language = fallback
        self._env = SandboxedEnvironment(
            loader=FileSystemLoader(str(self.templates_dir), encoding="utf-8"),
            undefined=StrictUndefined,
            autoescape=select_autoescape(
                enabled_extensions=("html.j2",), disabled_extensions=(), default_for_string=False, default=False
            ),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            # Every compiled template stays cached (6 forms x templates x languages).
            cache_size=-1,
            auto_reload=auto_reload,
        )

    # ------------------------------------------------------------------ render
    def render(self, template: str, channel: str, language: str, context: Mapping[str, Any]) -> RenderedMessage:
        forms = CHANNEL_FORMS.get(channel)
        if forms is None:
            raise ValueError(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
        if not _TEMPLATE_NAME.match(template or ""):
            raise ValueError(f"template {template!r} is not a template name like 'reminder_friendly'")

        language_dir, loaded = self._load(template, forms, language)
        values = dict(context)
        out: dict[str, str] = {}
        for form, compiled in zip(forms, loaded, strict=True):
            name = template_file(language_dir, template, form)
            try:
                out[form] = _finish(form, compiled.render(values))
            except TemplateNotFound as error:  # a layout it extends or includes
                raise TemplateMissing(
                    f"{name} needs {error.name}, which is not under {self.templates_dir}"
                ) from None
            except Exception as error:
                error.add_note(f"while rendering {self.templates_dir / name}")
                raise

        if channel == "email":
            return RenderedMessage(subject=out["email.subject"], text=out["email.txt"], html=out["email.html"])
        return RenderedMessage(subject=None, text=out[forms[0]], html=None)

    def _load(self, template: str, forms: tuple[str, ...], language: str) -> tuple[str, list[Template]]:
        """The first language (exact, then fallback) that has every form."""
        candidates: list[str] = []
        exact = _normalise_language(language)
        if exact is not None:
            candidates.append(exact)
        if self.fallback_language not in candidates:
            candidates.append(self.fallback_language)

        missing: list[str] = []
        for candidate in candidates:
            try:
                return candidate, [self._env.get_template(template_file(candidate, template, f)) for f in forms]
            except TemplateNotFound as error:
                missing.append(error.name or template_file(candidate, template, "?"))
        raise TemplateMissing(
            f"no template {' nor '.join(missing)} under {self.templates_dir} "
            f"(language {language!r}, fallback {self.fallback_language!r})"
        )

    # --------------------------------------------------------------- inventory
    def languages(self) -> list[str]:
        """Language directories present, sorted."""
        return sorted(
            p.name
            for p in self.templates_dir.iterdir()
            if p.is_dir() and not p.name.startswith((".", "_")) and _LANGUAGE.match(p.name)
        )

    def names(self) -> set[tuple[str, str, str]]:
        """(language, template, form) for every template file present (layouts excluded)."""
        found: set[tuple[str, str, str]] = set()
        for language in self.languages():
            for path in (self.templates_dir / language).iterdir():
                if not path.is_file() or not path.name.endswith(SUFFIX):
                    continue
                stem = path.name[: -len(SUFFIX)]
                for form in FORMS:
                    template = stem[: -len(form) - 1]
                    if stem.endswith("." + form) and _TEMPLATE_NAME.match(template):
                        found.add((language, template, form))
                        break
        return found
