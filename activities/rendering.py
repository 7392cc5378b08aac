"""Message templates: config/templates/<language>/<template>.<form>.j2.

A template is named by the policy's contact step (`reminder_friendly`, ...);
each channel renders one or more *forms* of it:

    sms    -> <template>.sms.j2
    push   -> <template>.push.j2
    voice  -> <template>.voice.j2            (a TTS script: never the link)
    email  -> <template>.email.subject.j2 + .email.txt.j2 + .email.html.j2
    letter -> <template>.letter.html.j2      (a printable HTML letter; text and html are both it)

One form belongs to no channel: `ivr` (<template>.ivr.j2), what a call says
after the borrower presses a key; the gateway renders it with `render_form`.

Files whose template part starts with "_" (e.g. `_layout.email.html.j2`) are
layouts that templates extend; they are not templates of their own.

Templates run in Jinja's sandbox with StrictUndefined, so a template that
names a variable the caller did not pass fails loudly instead of sending a
message with a hole in it. Only `.html.j2` files are autoescaped. The context
is exactly CONTEXT_KEYS.

Money and dates are formatted by Babel in the locale of the language the
message is written in, through two filters the renderer registers:

    {{ amount|money(currency) }}   "¥1,200.00" (zh_CN, CNY), "$1,200.00" (en, USD),
                                   "NT$1,200.00" (zh_TW, TWD), "JP¥123,456" (zh_CN, JPY)
    {{ due_date|day }}             "2026年11月1日" (zh_CN, zh_TW), "November 1, 2026" (en)

`amount` is a Decimal (a decimal string or an int is accepted; a float is
refused: money is never a float), `currency` an ISO 4217 code; the currency's
own decimals are used (JPY has none). The locale is that of the language
directory the template came from (LOCALES: zh_CN -> zh_Hans_CN, zh_TW ->
zh_Hant_TW, en -> en), so a borrower whose language falls back to `en` reads
English text with English numbers and dates.

Language resolution: the exact language directory (`zh_CN`; `zh-CN` is read
as `zh_CN`), else the fallback language (`en`). A channel's forms always come
from one language, so an e-mail never mixes a Chinese subject with an English
body. There is deliberately no prefix matching (`zh_HK` is not `zh_TW`).

One TemplateRenderer is meant to be shared: the Jinja environment compiles
each template once and caches it, and rendering is safe from many threads.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency, get_currency_symbol
from jinja2 import BytecodeCache, FileSystemLoader, StrictUndefined, Template, TemplateNotFound, pass_context, select_autoescape
from jinja2.bccache import Bucket
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

CHANNELS: Final = ("sms", "push", "email", "voice", "letter")
# What a caller hears from the keypad menu: the call's menu and goodbye, and
# the answers to each key. No channel sends it on its own.
IVR_FORM: Final = "ivr"
FORMS: Final = ("sms", "push", "email.subject", "email.txt", "email.html", "voice", IVR_FORM, "letter.html")
CHANNEL_FORMS: Final[dict[str, tuple[str, ...]]] = {
    "sms": ("sms",),
    "push": ("push",),
    "voice": ("voice",),
    "email": ("email.subject", "email.txt", "email.html"),
    # A mailed letter (the validation notice's fallback, printed by Lob): one
    # self-contained HTML document, letter size, no external assets.
    "letter": ("letter.html",),
}
# The variables every template may use, and the only ones:
#   lender_name, borrower_name  str
#   amount                      Decimal, the outstanding balance; show it with |money(currency)
#   currency                    str, ISO 4217 code ("CNY", "USD", "TWD")
#   due_date                    datetime.date; show it with |day
#   days_past_due               int
#   pay_link                    str, the one-click repayment URL with its opaque token (never in a voice script)
#   loan_id, stage              str
#   unsubscribe_url             str, the message's signed one-click unsubscribe URL on the gateway (e-mail footers)
#   notice                      the validation notice's information (NOTICE_KEYS below), a mapping, for
#                               template `validation_notice`; None for every other template
#   debt_collector              bool: the sender collects as a "debt collector", so the message carries
#                               12 CFR 1006.18(e)'s disclosure
#   summary                     for template `borrower_summary` (one message for several of the borrower's
#                               loans, issue 17 item 1), a mapping: `loans`, a list of {loan_id, amount
#                               (Decimal), currency, due_date (date), days_past_due, pay_link (that loan's
#                               own link)}, and `totals`, a list of {amount, currency}, one per currency;
#                               None for every other template. The message's own amount, currency,
#                               pay_link and loan_id are its first loan's.
#   time_barred                 bool: the debt is time-barred (issue 18, item 2): the message is the
#                               template's time-barred variant, which threatens no suit (12 CFR 1006.26(b))
#   limitation_disclosure       str, the disclosure the debt's jurisdiction requires once it is
#                               time-barred (activities/limitation_disclosures.py); "" otherwise
# Both default to "not time-barred" when a caller leaves them out (TIME_BARRED_DEFAULTS).
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
        "unsubscribe_url",
        "notice",
        "debt_collector",
        "call_recorded",  # bool: the call is recorded; its voice script says so first (issue 16, item 7)
        "summary",  # the loans one merged message covers (borrower_summary), else None (issue 17, item 1)
        "time_barred",
        "limitation_disclosure",
    }
)
# What a context that says nothing of the statute of limitations means: an
# ordinary message (every caller from before issue 18, item 2).
TIME_BARRED_DEFAULTS: Final = {"time_barred": False, "limitation_disclosure": ""}
# The keys of `notice` (activities/outbox.py, `validation_notice`), each always
# present, None (or empty) when not known. 12 CFR 1006.34(c), Model Form B-1:
#   collector_name              str, who collects (the profile's [collector]; the lender's name without one)
#   collector_address           list[str], the collector's mailing address lines (may be empty)
#   collector_phone             str | None
#   dispute_email, dispute_url  str | None: the electronic way to dispute or ask for the original creditor
#   consumer_name               str; consumer_address list[str] (from the directory; may be empty)
#   current_creditor            str, to whom the debt is owed now (1006.34(c)(2)(v))
#   creditor_on_itemization_date  str | None, for a consumer financial product debt (1006.34(c)(2)(iii))
#   account_last4               str | None, the account number's last four characters (1006.34(c)(2)(iv))
#   itemization_date            date (1006.34(b)(3), (c)(2)(vi))
#   amount_on_itemization_date  Decimal (1006.34(c)(2)(vii))
#   interest_since, fees_since  Decimal, charged since the itemization date (1006.34(c)(2)(viii))
#   paid_or_credited_since      Decimal, payments plus credits since then (B-1 shows them on one line)
#   current_amount              Decimal (1006.34(c)(2)(ix)) = the amount then + interest + fees - paid or credited
#   itemized                    bool: False when the loan was placed without an itemization (the notice
#                               then itemizes from the due date: the amount due, nothing since)
#   provided_on                 date the notice is provided
#   validation_period_ends      date, the end of the validation period (1006.34(b)(5), (c)(3))
#   debt_collector              bool, as the context's `debt_collector`
NOTICE_KEYS: Final = frozenset(
    {
        "collector_name", "collector_address", "collector_phone", "dispute_email", "dispute_url",
        "consumer_name", "consumer_address", "current_creditor", "creditor_on_itemization_date", "account_last4",
        "itemization_date", "amount_on_itemization_date", "interest_since", "fees_since", "paid_or_credited_since",
        "current_amount", "itemized", "provided_on", "validation_period_ends", "debt_collector",
    }
)
SUFFIX: Final = ".j2"

# Template language directory -> Babel locale for money and dates.
LOCALES: Final[dict[str, str]] = {"en": "en", "zh_CN": "zh_Hans_CN", "zh_TW": "zh_Hant_TW"}
# Where CLDR's symbol is ambiguous to the reader: in Taiwan "$" alone reads as
# US dollars in a loan notice, so the New Taiwan dollar is written "NT$".
SYMBOL_OVERRIDES: Final[dict[tuple[str, str], str]] = {("zh_Hant_TW", "TWD"): "NT$"}
# The render context key carrying the Babel locale to the filters (not a template variable).
_LOCALE_KEY: Final = "_babel_locale"
_CURRENCY = re.compile(r"^[A-Z]{3}$")

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


@lru_cache(maxsize=64)
def babel_locale(language: str) -> Locale:
    """The Babel locale for a template language ('zh_TW' -> zh_Hant_TW); `en` for
    anything Babel does not know."""
    normalised = _normalise_language(language) or "en"
    try:
        return Locale.parse(LOCALES.get(normalised, normalised))
    except (ValueError, UnknownLocaleError):
        return Locale.parse("en")


def format_money(amount: Any, currency: str, locale: Locale | str = "en") -> str:
    """`amount` in `currency`, as the locale writes it, with the currency's decimals."""
    if isinstance(amount, (float, bool)):
        raise TypeError(f"money must be a Decimal or a decimal string, not {type(amount).__name__} {amount!r}")
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation:
        raise ValueError(f"amount {amount!r} is not a decimal number") from None
    if not value.is_finite():
        raise ValueError(f"amount {amount!r} is not a finite number")
    code = str(currency or "").strip().upper()
    if not _CURRENCY.match(code):
        raise ValueError(f"currency {currency!r} is not an ISO 4217 code like 'CNY'")
    where = locale if isinstance(locale, Locale) else babel_locale(locale)
    text = format_currency(value, code, locale=where)
    override = SYMBOL_OVERRIDES.get((str(where), code))
    if override:
        text = text.replace(get_currency_symbol(code, locale=where), override, 1)
    return text


def format_day(value: Any, locale: Locale | str = "en") -> str:
    """A calendar date in the locale's long form: "November 1, 2026", "2026年11月1日"."""
    if isinstance(value, str):
        value = date.fromisoformat(value.strip())
    if not isinstance(value, date):
        raise TypeError(f"day needs a date, not {type(value).__name__} {value!r}")
    where = locale if isinstance(locale, Locale) else babel_locale(locale)
    return format_date(value, format="long", locale=where)


def _context_locale(ctx: Context) -> Locale:
    where = ctx.get(_LOCALE_KEY)
    return where if isinstance(where, Locale) else babel_locale("en")


@pass_context
def _money_filter(ctx: Context, amount: Any, currency: str) -> str:
    return format_money(amount, currency, _context_locale(ctx))


@pass_context
def _day_filter(ctx: Context, value: Any) -> str:
    return format_day(value, _context_locale(ctx))


# The filters every template may use, and the only ones besides Jinja's own.
FILTERS: Final = {"money": _money_filter, "day": _day_filter}


def _single_line(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _finish(form: str, text: str) -> str:
    if form in ("voice", "ivr", "email.subject"):
        # TTS reads one flowing script; a subject is one header line, so a
        # newline in a name can never start a new header.
        return _single_line(text)
    if form == "email.txt":
        return text.strip() + "\n"
    if form in ("email.html", "letter.html"):
        return text.strip() + "\n"
    return text.strip()


class _CompiledTemplates(BytecodeCache):
    """Each template's compiled code by its name and source, shared by every
    renderer in the process: a worker's renderers, and the template lint's,
    which in the tests renders copies of the same tree (each in another
    directory, hence not found by Jinja's own per-file cache) many times.
    The code object is kept as it is, not marshalled; every renderer's
    environment is configured alike (TemplateRenderer)."""

    LIMIT = 4096  # distinct (name, source) pairs kept; then it starts again

    def __init__(self) -> None:
        self._codes: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get_bucket(self, environment, name: str, filename: str | None, source: str) -> Bucket:
        key = hashlib.sha256(f"{name}\0{source}".encode("utf-8", "surrogatepass")).hexdigest()
        bucket = Bucket(environment, key, self.get_source_checksum(source))
        self.load_bytecode(bucket)
        return bucket

    def load_bytecode(self, bucket: Bucket) -> None:
        bucket.code = self._codes.get(bucket.key)

    def dump_bytecode(self, bucket: Bucket) -> None:
        with self._lock:
            if len(self._codes) >= self.LIMIT:
                self._codes.clear()
            self._codes[bucket.key] = bucket.code


_COMPILED = _CompiledTemplates()


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
            bytecode_cache=_COMPILED,
        )
        self._env.filters.update(FILTERS)

    # ------------------------------------------------------------------ render
    def render(self, template: str, channel: str, language: str, context: Mapping[str, Any]) -> RenderedMessage:
        forms = CHANNEL_FORMS.get(channel)
        if forms is None:
            raise ValueError(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
        if not _TEMPLATE_NAME.match(template or ""):
            raise ValueError(f"template {template!r} is not a template name like 'reminder_friendly'")

        language_dir, loaded = self._load(template, forms, language)
        out = {
            form: self._render_compiled(compiled, language_dir, template, form, context)
            for form, compiled in zip(forms, loaded, strict=True)
        }
        if channel == "email":
            return RenderedMessage(subject=out["email.subject"], text=out["email.txt"], html=out["email.html"])
        if channel == "letter":
            # A letter is one HTML document, the print provider's input: the
            # body (what the outbox keeps and hashes) is that document too.
            return RenderedMessage(subject=None, text=out["letter.html"], html=out["letter.html"])
        return RenderedMessage(subject=None, text=out[forms[0]], html=None)

    def render_form(self, language: str, template: str, form: str, context: Mapping[str, Any]) -> str:
        """One form of a template from exactly this language directory, finished
        as `render` finishes it (layouts included), with no fallback: for
        reviewing a language's files (the template lint), not for sending."""
        if form not in FORMS:
            raise ValueError(f"form {form!r} is not one of {', '.join(FORMS)}")
        if not _TEMPLATE_NAME.match(template or ""):
            raise ValueError(f"template {template!r} is not a template name like 'reminder_friendly'")
        language_dir = _normalise_language(language)
        if language_dir is None:
            raise ValueError(f"language {language!r} is not a language like 'en' or 'zh_CN'")
        name = template_file(language_dir, template, form)
        try:
            compiled = self._env.get_template(name)
        except TemplateNotFound as error:
            raise TemplateMissing(f"no template {error.name or name} under {self.templates_dir}") from None
        return self._render_compiled(compiled, language_dir, template, form, context)

    def _render_compiled(
        self, compiled: Template, language_dir: str, template: str, form: str, context: Mapping[str, Any]
    ) -> str:
        values = TIME_BARRED_DEFAULTS | dict(context)
        values[_LOCALE_KEY] = babel_locale(language_dir)
        name = template_file(language_dir, template, form)
        try:
            return _finish(form, compiled.render(values))
        except TemplateNotFound as error:  # a layout it extends or includes
            raise TemplateMissing(f"{name} needs {error.name}, which is not under {self.templates_dir}") from None
        except Exception as error:
            error.add_note(f"while rendering {self.templates_dir / name}")
            raise

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
