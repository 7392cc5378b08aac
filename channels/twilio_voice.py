"""Voice calls through Twilio, with the official `twilio` SDK.

The call carries its TwiML inline (no URL for Twilio to fetch): the rendered
voice script spoken in the borrower's language, inside a one-digit <Gather>
whose answer goes to the gateway:

    1  the repayment link by SMS
    2  an installment plan (the policy's first offer)
    3  an agent, or a dispute

The voice scripts open with the identity check (anyone but the borrower is
asked to hang up) before the debt is mentioned. Answering machines: the call is
placed with answering-machine detection (`MachineDetection=Enable`,
`AsyncAmd=true`); Twilio posts `AnsweredBy` to the gateway's
`/webhooks/twilio/amd?key=...`, which ends the call (or replaces its TwiML with
a neutral call-back request) when a machine or fax answered, so no debt details
are left on a machine a third party might hear. Call outcomes (answered, busy,
no answer, failed, completed) go to `/webhooks/twilio/status?key=...`.
"""

from __future__ import annotations

from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from channels.base import OutboundMessage, ProviderReceipt, callback_url
from channels.twilio_sms import STATUS_PATH, TwilioChannel

GATHER_PATH = "/webhooks/twilio/gather"
AMD_PATH = "/webhooks/twilio/amd"
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]

# Borrower language (the templates' directory name) -> Twilio <Say> language
# and voice. `alice` speaks each of these languages; a Polly or Google voice
# can be put here instead.
SAY = {
    "zh_CN": ("zh-CN", "alice"),
    "zh_TW": ("zh-TW", "alice"),
    "en": ("en-US", "alice"),
}

MENU = {
    "zh_CN": "如需通过短信接收还款链接，请按1。如需分期还款，请按2。转接人工客服或提出异议，请按3。",
    "zh_TW": "如需透過簡訊接收還款連結，請按1。如需分期還款，請按2。轉接專人客服或提出異議，請按3。",
    "en": "To receive the repayment link by text message, press 1. To set up a repayment plan in instalments, press 2. "
          "To speak to an agent or to dispute this debt, press 3.",
}

GOODBYE = {
    "zh_CN": "我们没有收到您的选择。感谢接听，再见。",
    "zh_TW": "我們沒有收到您的選擇。感謝接聽，再見。",
    "en": "We did not receive a choice. Thank you for your time. Goodbye.",
}


def _language(language: str) -> str:
    if language in SAY:
        return language
    base = language.replace("-", "_")
    if base in SAY:
        return base
    return "zh_CN" if base.lower().startswith("zh") else "en"


def call_twiml(message: OutboundMessage, public_base_url: str) -> str:
    """The call's TwiML: the script and the keypad menu in the borrower's
    language, the chosen digit posted to the gateway with the outbox key."""
    lang = _language(message.language)
    say_language, voice = SAY[lang]
    response = VoiceResponse()
    gather = response.gather(
        num_digits=1,
        action=callback_url(public_base_url, GATHER_PATH, message.key),
        method="POST",
        timeout=8,
    )
    gather.say(message.text, language=say_language, voice=voice)
    gather.say(MENU[lang], language=say_language, voice=voice)
    response.say(GOODBYE[lang], language=say_language, voice=voice)
    response.hangup()
    return str(response)


class TwilioVoiceChannel(TwilioChannel):
    name = "voice"

    def __init__(self, client: Client, public_base_url: str, from_number: str) -> None:
        if not from_number:
            raise ValueError("a Twilio voice channel needs a from number")
        super().__init__(client, public_base_url, from_number)

    def send(self, message: OutboundMessage) -> ProviderReceipt:
        return self._created("call", message, lambda: self._client.calls.create(
            to=message.recipient,
            from_=self._from,
            twiml=call_twiml(message, self._public_base_url),
            machine_detection="Enable",
            async_amd="true",
            async_amd_status_callback=self._callback(AMD_PATH, message.key),
            async_amd_status_callback_method="POST",
            status_callback=self._callback(STATUS_PATH, message.key),
            status_callback_event=STATUS_EVENTS,
            status_callback_method="POST",
        ))
