"""What a call says after the borrower presses a key: templates of the `ivr`
form under config/templates/<language>/ (keypad_*.ivr.j2), rendered like
every other message and checked by the template lint, spoken in the call's
language with Twilio's <Say>.

The keypad answers take no template variables: the gateway answers without
reading the borrower's record. The menu they answer is the call_menu ivr
template, which runtime/channels.py renders for the voice channel."""

from __future__ import annotations

from activities.rendering import IVR_FORM, TemplateRenderer
from channels.twilio_voice import SAY

FALLBACK_LANGUAGE = "en"

PAY_LINK_SENT = "keypad_pay_link"  # 1: the repayment link goes by SMS
PLAN_SET_UP = "keypad_plan"  # 2: the policy's first plan offer was accepted
PLAN_NOT_SET_UP = "keypad_plan_failed"  # 2, refused or unavailable: an agent calls back
AGENT = "keypad_agent"  # 3: an agent, or a dispute
NOT_AN_OPTION = "keypad_other"

KEYPAD = {"1": PAY_LINK_SENT, "2": PLAN_SET_UP, "3": AGENT}


def keypad_answer(templates: TemplateRenderer, language: str, template: str) -> tuple[str, str]:
    """(the words, the <Say> language) of a keypad answer in the call's
    language; English for a language the calls are not made in."""
    language = language if language in SAY else FALLBACK_LANGUAGE
    say_language, _voice = SAY[language]
    return templates.render_form(language, template, IVR_FORM, {}), say_language
