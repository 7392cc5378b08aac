"""Which provider serves which channel, from settings.

Every channel is local capture unless its `DUNNING_<CHANNEL>_PROVIDER` names a
real provider; a real provider whose settings are incomplete stops the worker
at start with a `ProviderConfigError` naming the missing variables.

A voice call's keypad menu and goodbye are message templates like any other
(the `ivr` form, CALL_MENU and CALL_GOODBYE under config/templates/<lang>/);
they are rendered here once per language a call can be made in and passed to
the Twilio voice channel, which reads no configuration of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from activities.rendering import IVR_FORM, TemplateRenderer
from channels.base import Channel, ProviderConfigError
from channels.local import LocalCaptureChannel
from dunning.contract import CHANNELS
from runtime.settings import Settings

if TYPE_CHECKING:
    from channels.twilio_voice import CallWords

CALL_MENU = "call_menu"  # read inside the call's <Gather>: 1 pay link, 2 plan, 3 agent or dispute
CALL_GOODBYE = "call_goodbye"  # said when no key is pressed, before hanging up


def _require(selector: str, needed: dict[str, str], one_of: dict[str, str] | None = None) -> None:
    """`needed`: env name -> value, all required; `one_of`: at least one of them."""
    missing = [name for name, value in needed.items() if not value]
    if one_of and not any(one_of.values()):
        missing.append(" or ".join(one_of))
    if missing:
        raise ProviderConfigError(f"{selector} needs {', '.join(missing)}; set {'them' if len(missing) > 1 else 'it'} "
                                  f"or choose the local provider")


def call_script(templates: TemplateRenderer) -> dict[str, CallWords]:
    """The call's menu and goodbye in every language a call can be made in,
    each from exactly that language's templates (no fallback: a missing file
    stops the worker at start rather than a call speaking another language)."""
    from channels.twilio_voice import SAY, CallWords

    return {
        language: CallWords(menu=templates.render_form(language, CALL_MENU, IVR_FORM, {}),
                            goodbye=templates.render_form(language, CALL_GOODBYE, IVR_FORM, {}))
        for language in SAY
    }


def build_channels(settings: Settings) -> dict[str, Channel]:
    channels: dict[str, Channel] = {channel: LocalCaptureChannel(channel) for channel in CHANNELS}
    twilio_client = None

    def twilio():
        nonlocal twilio_client
        if twilio_client is None:
            from channels.twilio_sms import make_twilio_client

            twilio_client = make_twilio_client(settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value(),
                                               settings.twilio_api_base_url, settings.provider_timeout_seconds)
        return twilio_client

    twilio_credentials = {"TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
                          "TWILIO_AUTH_TOKEN": settings.twilio_auth_token.get_secret_value()}

    if settings.sms_provider == "twilio":
        from channels.twilio_sms import TwilioSmsChannel

        _require("DUNNING_SMS_PROVIDER=twilio", twilio_credentials,
                 one_of={"TWILIO_FROM_NUMBER": settings.twilio_from_number,
                         "TWILIO_MESSAGING_SERVICE_SID": settings.twilio_messaging_service_sid})
        channels["sms"] = TwilioSmsChannel(twilio(), settings.public_base_url, settings.twilio_from_number,
                                           settings.twilio_messaging_service_sid)

    if settings.voice_provider == "twilio":
        from channels.twilio_voice import TwilioVoiceChannel

        _require("DUNNING_VOICE_PROVIDER=twilio",
                 {**twilio_credentials, "TWILIO_FROM_NUMBER": settings.twilio_from_number})
        channels["voice"] = TwilioVoiceChannel(twilio(), settings.public_base_url, settings.twilio_from_number,
                                               call_script(TemplateRenderer(settings.templates_dir)))

    if settings.email_provider == "sendgrid":
        from channels.sendgrid_email import SendGridEmailChannel

        _require("DUNNING_EMAIL_PROVIDER=sendgrid",
                 {"SENDGRID_API_KEY": settings.sendgrid_api_key.get_secret_value(),
                  "SENDGRID_FROM_EMAIL": settings.sendgrid_from_email})
        channels["email"] = SendGridEmailChannel(
            settings.sendgrid_api_key.get_secret_value(), settings.sendgrid_from_email, settings.lender_name,
            settings.sendgrid_api_host, settings.provider_timeout_seconds,
            # One-click unsubscribe (channels/unsubscribe.py): the gateway's
            # public URL and the secret its links are signed with.
            public_base_url=settings.public_base_url, unsubscribe_secret=settings.signing_secret(),
            unsubscribe_group_id=settings.sendgrid_unsubscribe_group_id,
        )

    if settings.push_provider == "push":
        from channels.push import AppPushChannel

        _require("DUNNING_PUSH_PROVIDER=push",
                 {"DUNNING_PUSH_URL": settings.push_url, "DUNNING_PUSH_TOKEN": settings.push_token.get_secret_value()})
        channels["push"] = AppPushChannel(settings.push_url, settings.push_token.get_secret_value(), settings.lender_name,
                                          settings.provider_timeout_seconds)

    if settings.letter_provider == "lob":
        from channels.lob_letter import LobLetterChannel

        _require("DUNNING_LETTER_PROVIDER=lob",
                 {"LOB_API_KEY": settings.lob_api_key.get_secret_value(),
                  "LOB_FROM_ADDRESS_ID": settings.lob_from_address_id})
        channels["letter"] = LobLetterChannel(settings.lob_api_key.get_secret_value(), settings.lob_from_address_id,
                                              settings.lob_api_base_url, settings.provider_timeout_seconds)

    return channels
