"""A borrower's address taken out of free text (a provider's error, a log
line) in whatever form the text quotes it.

A provider does not echo the address as we sent it: Twilio may say
`8613800138000` or `+86 138 0013 8000` for `+8613800138000`, a mail server
may upper-case an e-mail address. An exact `str.replace` lets those through,
so a phone number is compared by its digits, through its national
significant number (phonenumbers), and an e-mail address without regard to
case (and URL-encoded, as in a quoted link).
"""

from __future__ import annotations

import re

import phonenumbers

from dunning.masking import mask

# A run of digits with the separators people and providers put in numbers:
# "+86 138-0013.8000", "(0)138 0013 8000", "8613800138000".
_DIGIT_RUN = re.compile(r"\+?\(?\d(?:[ \t\-.()/\u00a0]*\d)+")
_SHORTEST_NUMBER = 6  # fewer digits than this would mask order ids and amounts


def _phone_cores(recipient: str) -> set[str]:
    """The digit strings whose presence in a run means the run is this number:
    its national significant number (which every formatting contains: with or
    without +country code, a trunk 0 or 00 prefix) and its own digits."""
    cores = set()
    digits = re.sub(r"\D", "", recipient)
    if len(digits) >= _SHORTEST_NUMBER:
        cores.add(digits)
    try:
        number = phonenumbers.parse(recipient if recipient.startswith("+") else f"+{digits}", None)
    except phonenumbers.NumberParseException:
        number = None
    if number is not None:
        national = phonenumbers.national_significant_number(number)
        if len(national) >= _SHORTEST_NUMBER:
            cores.add(national)
    return cores


def _scrub_phone(text: str, recipient: str, replacement: str) -> str:
    cores = _phone_cores(recipient)
    if not cores:
        return text

    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return replacement if any(core in digits for core in cores) else match.group(0)

    return _DIGIT_RUN.sub(replace, text)


def _scrub_email(text: str, recipient: str, replacement: str) -> str:
    forms = {recipient, recipient.replace("@", "%40")}
    pattern = re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)), re.IGNORECASE)
    return pattern.sub(replacement, text)


def scrub_recipient(text: str, recipient: str | None) -> str:
    """`text` with every form of `recipient` replaced by its masked form."""
    if not recipient or not text:
        return text
    replacement = mask(recipient)
    if "@" in recipient:
        return _scrub_email(text, recipient, replacement)
    text = text.replace(recipient, replacement)  # a push token or device id: as it is
    if re.fullmatch(r"[+\d][\d \-.()]*", recipient.strip()):
        text = _scrub_phone(text, recipient, replacement)
    return text
