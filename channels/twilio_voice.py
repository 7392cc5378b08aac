"""Voice calls through Twilio, with the official `twilio` SDK.

The call carries its TwiML inline (no URL for Twilio to fetch): the rendered
voice script spoken in the borrower's language, inside a one-digit <Gather>
whose answer goes to the gateway:

    1  the repayment link by SMS
    2  an installment plan (the policy's first offer)
    3  an agent, or a dispute

The menu, and the goodbye said when no key is pressed, are templates of the
`ivr` form (config/templates/<lang>/call_menu.ivr.j2, call_goodbye.ivr.j2)
like every other message; runtime/channels.py renders them once per language
and passes them in as a `CallScript`, so this adapter reads no configuration.

The voice scripts open with the identity check (anyone but the borrower is
asked to hang up) before the debt is mentioned. Answering machines: the call is
placed with answering-machine detection (`MachineDetection=Enable`,
`AsyncAmd=true`); Twilio posts `AnsweredBy` to the gateway's
`/webhooks/twilio/amd?key=...`, which ends the call (or replaces its TwiML with
a neutral call-back request) when a machine or fax answered, so no debt details
are left on a machine a third party might hear. Call outcomes (answered, busy,
no answer, failed, completed) go to `/webhooks/twilio/status?key=...`.

Recorded calls (`OutboundMessage.record`, from the profile's
rules.record_calls; issue 16, item 7): the call is created with `Record=true`
and Twilio posts the finished recording (`RecordingSid`, `RecordingDuration`)
to `/webhooks/twilio/recording?key=...`, which keeps its reference on the
contact row; the script says the call is recorded (the template's
`call_recorded`). `TwilioRecordings` deletes a recording at Twilio when the
retention job (activities/retention.py) finds it past the profile's
records_retention_years.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from channels.base import OutboundMessage, PermanentSendError, ProviderReceipt, TransientSendError, callback_url
from channels.twilio_sms import STATUS_PATH, TwilioChannel, twilio_error

GATHER_PATH = "/webhooks/twilio/gather"
AMD_PATH = "/webhooks/twilio/amd"
RECORDING_PATH = "/webhooks/twilio/recording"
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]
# A recorded call's recording is reported once, when it is available.
RECORDING_EVENTS = ["completed"]

# Borrower language (the templates' directory name) -> Twilio <Say> language
# and voice. `alice` speaks each of these languages; a Polly or Google voice
# can be put here instead.
SAY = {
    "zh_CN": ("zh-CN", "alice"),
    "zh_TW": ("zh-TW", "alice"),
    "en": ("en-US", "alice"),
}


@dataclass(frozen=True)
class CallWords:
    """What a call says around the voice script in one language: the keypad
    menu read inside the <Gather>, and the goodbye when no key is pressed."""

    menu: str
    goodbye: str


# Borrower language (a key of SAY) -> what the call says in it.
CallScript = Mapping[str, CallWords]


def _language(language: str) -> str:
    if language in SAY:
        return language
    base = language.replace("-", "_")
    if base in SAY:
        return base
    return "zh_CN" if base.lower().startswith("zh") else "en"


def call_twiml(message: OutboundMessage, public_base_url: str, script: CallScript) -> str:
    """The call's TwiML: the script and the keypad menu in the borrower's
    language, the chosen digit posted to the gateway with the outbox key."""
    lang = _language(message.language)
    say_language, voice = SAY[lang]
    words = script[lang]
    response = VoiceResponse()
    gather = response.gather(
        num_digits=1,
        action=callback_url(public_base_url, GATHER_PATH, message.key),
        method="POST",
        timeout=8,
    )
    gather.say(message.text, language=say_language, voice=voice)
    gather.say(words.menu, language=say_language, voice=voice)
    response.say(words.goodbye, language=say_language, voice=voice)
    response.hangup()
    return str(response)


class TwilioVoiceChannel(TwilioChannel):
    name = "voice"

    def __init__(self, client: Client, public_base_url: str, from_number: str, script: CallScript) -> None:
        if not from_number:
            raise ValueError("a Twilio voice channel needs a from number")
        # Every language a call can be made in (SAY), checked at start: a
        # missing one would otherwise fail only when such a call is placed.
        missing = sorted(set(SAY) - set(script))
        if missing:
            raise ValueError(f"a Twilio voice channel needs the call's words in {', '.join(missing)}")
        super().__init__(client, public_base_url, from_number)
        self._script = dict(script)

    def send(self, message: OutboundMessage) -> ProviderReceipt:
        return self._created("call", message, lambda: self._client.calls.create(
            to=message.recipient,
            from_=self._from,
            twiml=call_twiml(message, self._public_base_url, self._script),
            machine_detection="Enable",
            async_amd="true",
            async_amd_status_callback=self._callback(AMD_PATH, message.key),
            async_amd_status_callback_method="POST",
            status_callback=self._callback(STATUS_PATH, message.key),
            status_callback_event=STATUS_EVENTS,
            status_callback_method="POST",
            **self._recording(message),
        ))

    def _recording(self, message: OutboundMessage) -> dict:
        """calls.create's recording arguments: none for a call not to be recorded."""
        if not message.record:
            return {}
        return {
            "record": True,
            "recording_status_callback": self._callback(RECORDING_PATH, message.key),
            "recording_status_callback_event": RECORDING_EVENTS,
            "recording_status_callback_method": "POST",
        }


class TwilioRecordings:
    """Deleting a call's recording at Twilio (DELETE
    /2010-04-01/Accounts/{AccountSid}/Recordings/{Sid}.json), for the
    retention job. Errors map as the channels' do: 429, 5xx and no answer are
    TransientSendError (tried again on the next run), other refusals
    PermanentSendError."""

    provider = "twilio"

    def __init__(self, client: Client) -> None:
        self._client = client

    def delete(self, recording_sid: str) -> bool:
        """True when Twilio deleted it now; False when Twilio no longer has
        it (404: deleted before, by an earlier run that stopped before
        marking the row, or in Twilio's console)."""
        from twilio.base.exceptions import TwilioRestException

        try:
            self._client.recordings(recording_sid).delete()
        except TwilioRestException as error:
            status = int(error.status or 0)
            if status == 404:
                return False
            detail = f"twilio recording deletion refused: HTTP {status}, error {error.code}: {str(error.msg or '')[:200]}"
            transient = status == 429 or status >= 500 or status == 0
            raise (TransientSendError if transient else PermanentSendError)(detail) from None
        except Exception as error:  # mapped; anything unexpected propagates as itself
            raise twilio_error(error, recording_sid, "recording deletion") from None
        return True
